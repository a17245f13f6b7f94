// A trivial ROS 2 node in C on rcl (the C client library under rclpy and rclcpp): it answers every
// sensor_msgs/Image with a geometry_msgs/TwistStamped carrying the frame's stamp, as the rclpy relay in
// benchmarks/node_latency.py does. Its round trip is the graph's cost without Python in the middle node:
// the floor a native controller node would sit on. Built and run by node_latency.py --native.
//
//   native_relay <image_topic> <cmd_topic> [--ros-args ...]

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <geometry_msgs/msg/twist_stamped.h>
#include <rcl/error_handling.h>
#include <rcl/rcl.h>
#include <rmw/qos_profiles.h>
#include <rosidl_runtime_c/string_functions.h>
#include <sensor_msgs/msg/image.h>

static volatile sig_atomic_t running = 1;

static void stop(int signum) {
  (void)signum;
  running = 0;
}

#define CHECK(call)                                                              \
  do {                                                                           \
    rcl_ret_t rc_ = (call);                                                      \
    if (rc_ != RCL_RET_OK) {                                                     \
      fprintf(stderr, "native_relay: %s failed: %s\n", #call, rcl_get_error_string().str); \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s <image_topic> <cmd_topic> [--ros-args ...]\n", argv[0]);
    return 2;
  }
  signal(SIGINT, stop);
  signal(SIGTERM, stop);
  rcl_allocator_t allocator = rcl_get_default_allocator();
  rcl_init_options_t init_options = rcl_get_zero_initialized_init_options();
  CHECK(rcl_init_options_init(&init_options, allocator));
  rcl_context_t context = rcl_get_zero_initialized_context();
  CHECK(rcl_init(argc, (const char* const*)argv, &init_options, &context));

  rcl_node_t node = rcl_get_zero_initialized_node();
  rcl_node_options_t node_options = rcl_node_get_default_options();
  CHECK(rcl_node_init(&node, "node_latency_native_relay", "", &context, &node_options));

  // The controller's camera QoS (lnn_nav.nodes.controller.SENSOR_QOS): best effort, keep last 1.
  rcl_subscription_options_t sub_options = rcl_subscription_get_default_options();
  sub_options.qos = rmw_qos_profile_sensor_data;
  sub_options.qos.depth = 1;
  rcl_subscription_t sub = rcl_get_zero_initialized_subscription();
  CHECK(rcl_subscription_init(&sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(sensor_msgs, msg, Image), argv[1],
                              &sub_options));
  rcl_publisher_options_t pub_options = rcl_publisher_get_default_options();  // reliable, keep last 10
  rcl_publisher_t pub = rcl_get_zero_initialized_publisher();
  CHECK(rcl_publisher_init(&pub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(geometry_msgs, msg, TwistStamped), argv[2],
                           &pub_options));

  rcl_wait_set_t wait_set = rcl_get_zero_initialized_wait_set();
  CHECK(rcl_wait_set_init(&wait_set, 1, 0, 0, 0, 0, 0, &context, allocator));
  /* Zeroed first: rosidl's C init leaves fields without a default (a Vector3's components) unset. */
  sensor_msgs__msg__Image image = {0};
  geometry_msgs__msg__TwistStamped command = {0};
  sensor_msgs__msg__Image__init(&image);
  geometry_msgs__msg__TwistStamped__init(&command);
  command.twist.linear.x = 1.0;  // not a hover: the probe counts it as an answer

  while (running) {
    CHECK(rcl_wait_set_clear(&wait_set));
    CHECK(rcl_wait_set_add_subscription(&wait_set, &sub, NULL));
    rcl_ret_t waited = rcl_wait(&wait_set, RCL_MS_TO_NS(100));  // wakes for the stop flag too
    if (waited == RCL_RET_TIMEOUT) continue;
    if (waited != RCL_RET_OK) {
      fprintf(stderr, "native_relay: rcl_wait failed: %s\n", rcl_get_error_string().str);
      break;
    }
    rmw_message_info_t info;
    while (rcl_take(&sub, &image, &info, NULL) == RCL_RET_OK) {
      command.header.stamp = image.header.stamp;
      if (!rosidl_runtime_c__String__assign(&command.header.frame_id, image.header.frame_id.data)) break;
      if (rcl_publish(&pub, &command, NULL) != RCL_RET_OK) {
        fprintf(stderr, "native_relay: rcl_publish failed: %s\n", rcl_get_error_string().str);
        rcl_reset_error();
      }
    }
  }

  sensor_msgs__msg__Image__fini(&image);
  geometry_msgs__msg__TwistStamped__fini(&command);
  // In order: the wait set, publisher and subscription before their node, shutdown before the context.
  // Teardown errors change nothing at exit; each is still reported.
  if (rcl_wait_set_fini(&wait_set) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_wait_set_fini failed\n");
  if (rcl_publisher_fini(&pub, &node) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_publisher_fini failed\n");
  if (rcl_subscription_fini(&sub, &node) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_subscription_fini failed\n");
  if (rcl_node_fini(&node) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_node_fini failed\n");
  if (rcl_shutdown(&context) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_shutdown failed\n");
  if (rcl_context_fini(&context) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_context_fini failed\n");
  if (rcl_init_options_fini(&init_options) != RCL_RET_OK) fprintf(stderr, "native_relay: rcl_init_options_fini failed\n");
  return 0;
}

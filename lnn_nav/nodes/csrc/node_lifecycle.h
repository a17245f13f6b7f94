// The managed-node lifecycle of rclcpp's and rclpy's LifecycleNode, on rcl_lifecycle's default state machine:
// the five services (~/change_state, ~/get_state, ~/get_available_states, ~/get_available_transitions,
// ~/get_transition_graph) and ~/transition_event under the node's name, so `ros2 lifecycle` and lifecycle
// managers drive the native controller as they drive the Python one.
//
// A transition runs the node's callback in the intermediate state (configuring, activating, ...), then
// completes by the callback's answer (success, failure, error; an error goes through errorprocessing and the
// callback once more), as rclcpp's LifecycleNode::change_state does.
#pragma once

#include <stdio.h>
#include <string.h>

#include <functional>
#include <string>

#include <lifecycle_msgs/msg/state.h>
#include <lifecycle_msgs/msg/transition.h>
#include <lifecycle_msgs/msg/transition_description.h>
#include <lifecycle_msgs/msg/transition_event.h>
#include <lifecycle_msgs/srv/change_state.h>
#include <lifecycle_msgs/srv/get_available_states.h>
#include <lifecycle_msgs/srv/get_available_transitions.h>
#include <lifecycle_msgs/srv/get_state.h>
#include <rcl/error_handling.h>
#include <rcl/rcl.h>
#include <rcl_lifecycle/rcl_lifecycle.h>
#include <rosidl_runtime_c/string_functions.h>

class NodeLifecycle {
 public:
  // The node's part of a transition: given the intermediate state (lifecycle_msgs State TRANSITION_STATE_*),
  // a lifecycle_msgs Transition TRANSITION_CALLBACK_SUCCESS, _FAILURE or _ERROR.
  using Callback = std::function<uint8_t(uint8_t intermediate_state)>;

  bool init(rcl_node_t* node, std::string& err) {
    node_ = node;
    sm_ = rcl_lifecycle_get_zero_initialized_state_machine();
    rcl_lifecycle_state_machine_options_t options = rcl_lifecycle_get_default_state_machine_options();
    options.enable_com_interface = true;
    options.initialize_default_states = true;
    const rcl_ret_t rc = rcl_lifecycle_state_machine_init(
        &sm_, node, ROSIDL_GET_MSG_TYPE_SUPPORT(lifecycle_msgs, msg, TransitionEvent),
        ROSIDL_GET_SRV_TYPE_SUPPORT(lifecycle_msgs, srv, ChangeState),
        ROSIDL_GET_SRV_TYPE_SUPPORT(lifecycle_msgs, srv, GetState),
        ROSIDL_GET_SRV_TYPE_SUPPORT(lifecycle_msgs, srv, GetAvailableStates),
        ROSIDL_GET_SRV_TYPE_SUPPORT(lifecycle_msgs, srv, GetAvailableTransitions),
        ROSIDL_GET_SRV_TYPE_SUPPORT(lifecycle_msgs, srv, GetAvailableTransitions), &options);
    if (rc != RCL_RET_OK) {
      err = std::string("the lifecycle state machine: ") + rcl_get_error_string().str;
      rcl_reset_error();
      return false;
    }
    initialised_ = true;
    return true;
  }

  void fini() {
    if (initialised_ && rcl_lifecycle_state_machine_fini(&sm_, node_) != RCL_RET_OK) rcl_reset_error();
    initialised_ = false;
  }

  uint8_t state() const { return sm_.current_state->id; }
  const char* label() const { return sm_.current_state->label; }

  rcl_ret_t add_to(rcl_wait_set_t* wait_set) {
    rcl_lifecycle_com_interface_t& c = sm_.com_interface;
    for (rcl_service_t* srv : {&c.srv_change_state, &c.srv_get_state, &c.srv_get_available_states,
                               &c.srv_get_available_transitions, &c.srv_get_transition_graph}) {
      const rcl_ret_t rc = rcl_wait_set_add_service(wait_set, srv, nullptr);
      if (rc != RCL_RET_OK) return rc;
    }
    return RCL_RET_OK;
  }
  static constexpr size_t kServices = 5;

  // Runs transition `id` from the current state; whether the node's callback succeeded. A transition the
  // current state does not offer changes nothing (false, logged).
  bool change(uint8_t id, const Callback& callback) {
    if (rcl_lifecycle_trigger_transition_by_id(&sm_, id, true) != RCL_RET_OK) {
      fprintf(stderr, "native_controller: lifecycle: no transition %u from '%s'\n", id, label());
      rcl_reset_error();
      return false;
    }
    const uint8_t answer = callback(state());
    if (!complete(answer)) return false;
    if (answer == lifecycle_msgs__msg__Transition__TRANSITION_CALLBACK_ERROR) complete(callback(state()));
    return answer == lifecycle_msgs__msg__Transition__TRANSITION_CALLBACK_SUCCESS;
  }

  // Answers every pending request on the five services.
  void serve(const Callback& callback) {
    rcl_lifecycle_com_interface_t& c = sm_.com_interface;
    rmw_request_id_t id;
    {
      lifecycle_msgs__srv__ChangeState_Request req{};
      lifecycle_msgs__srv__ChangeState_Request__init(&req);
      while (rcl_take_request(&c.srv_change_state, &id, &req) == RCL_RET_OK) {
        lifecycle_msgs__srv__ChangeState_Response resp{};
        lifecycle_msgs__srv__ChangeState_Response__init(&resp);
        unsigned int transition = req.transition.id;
        if (req.transition.label.size > 0) {  // a label names it, whatever the id (rclcpp, rclpy)
          const rcl_lifecycle_transition_t* t =
              rcl_lifecycle_get_transition_by_label(sm_.current_state, req.transition.label.data);
          if (t == nullptr) rcl_reset_error();
          transition = t != nullptr ? t->id : 0;
        }
        resp.success = transition != 0 && change(static_cast<uint8_t>(transition), callback);
        if (rcl_send_response(&c.srv_change_state, &id, &resp) != RCL_RET_OK) rcl_reset_error();
        lifecycle_msgs__srv__ChangeState_Response__fini(&resp);
      }
      lifecycle_msgs__srv__ChangeState_Request__fini(&req);
    }
    {
      lifecycle_msgs__srv__GetState_Request req{};
      lifecycle_msgs__srv__GetState_Request__init(&req);
      while (rcl_take_request(&c.srv_get_state, &id, &req) == RCL_RET_OK) {
        lifecycle_msgs__srv__GetState_Response resp{};
        lifecycle_msgs__srv__GetState_Response__init(&resp);
        fill(resp.current_state, *sm_.current_state);
        if (rcl_send_response(&c.srv_get_state, &id, &resp) != RCL_RET_OK) rcl_reset_error();
        lifecycle_msgs__srv__GetState_Response__fini(&resp);
      }
      lifecycle_msgs__srv__GetState_Request__fini(&req);
    }
    {
      lifecycle_msgs__srv__GetAvailableStates_Request req{};
      lifecycle_msgs__srv__GetAvailableStates_Request__init(&req);
      while (rcl_take_request(&c.srv_get_available_states, &id, &req) == RCL_RET_OK) {
        lifecycle_msgs__srv__GetAvailableStates_Response resp{};
        lifecycle_msgs__srv__GetAvailableStates_Response__init(&resp);
        const rcl_lifecycle_transition_map_t& map = sm_.transition_map;
        lifecycle_msgs__msg__State__Sequence__init(&resp.available_states, map.states_size);
        for (unsigned int i = 0; i < map.states_size; ++i) fill(resp.available_states.data[i], map.states[i]);
        if (rcl_send_response(&c.srv_get_available_states, &id, &resp) != RCL_RET_OK) rcl_reset_error();
        lifecycle_msgs__srv__GetAvailableStates_Response__fini(&resp);
      }
      lifecycle_msgs__srv__GetAvailableStates_Request__fini(&req);
    }
    // The current state's transitions, and the whole graph: the same reply type.
    answer_transitions(&c.srv_get_available_transitions, sm_.current_state->valid_transitions,
                       sm_.current_state->valid_transition_size);
    answer_transitions(&c.srv_get_transition_graph, sm_.transition_map.transitions,
                       sm_.transition_map.transitions_size);
  }

 private:
  bool complete(uint8_t answer) {
    const char* how = answer == lifecycle_msgs__msg__Transition__TRANSITION_CALLBACK_SUCCESS
                          ? rcl_lifecycle_transition_success_label
                      : answer == lifecycle_msgs__msg__Transition__TRANSITION_CALLBACK_FAILURE
                          ? rcl_lifecycle_transition_failure_label
                          : rcl_lifecycle_transition_error_label;
    if (rcl_lifecycle_trigger_transition_by_label(&sm_, how, true) != RCL_RET_OK) {
      fprintf(stderr, "native_controller: lifecycle: completing the transition (%s) failed: %s\n", how,
              rcl_get_error_string().str);
      rcl_reset_error();
      return false;
    }
    return true;
  }

  static void fill(lifecycle_msgs__msg__State& out, const rcl_lifecycle_state_t& s) {
    out.id = s.id;
    rosidl_runtime_c__String__assign(&out.label, s.label);
  }

  void answer_transitions(rcl_service_t* srv, const rcl_lifecycle_transition_t* list, unsigned int n) {
    rmw_request_id_t id;
    lifecycle_msgs__srv__GetAvailableTransitions_Request req{};
    lifecycle_msgs__srv__GetAvailableTransitions_Request__init(&req);
    while (rcl_take_request(srv, &id, &req) == RCL_RET_OK) {
      lifecycle_msgs__srv__GetAvailableTransitions_Response resp{};
      lifecycle_msgs__srv__GetAvailableTransitions_Response__init(&resp);
      lifecycle_msgs__msg__TransitionDescription__Sequence__init(&resp.available_transitions, n);
      for (unsigned int i = 0; i < n; ++i) {
        lifecycle_msgs__msg__TransitionDescription& d = resp.available_transitions.data[i];
        d.transition.id = static_cast<uint8_t>(list[i].id);
        rosidl_runtime_c__String__assign(&d.transition.label, list[i].label);
        fill(d.start_state, *list[i].start);
        fill(d.goal_state, *list[i].goal);
      }
      if (rcl_send_response(srv, &id, &resp) != RCL_RET_OK) rcl_reset_error();
      lifecycle_msgs__srv__GetAvailableTransitions_Response__fini(&resp);
    }
    lifecycle_msgs__srv__GetAvailableTransitions_Request__fini(&req);
  }

  rcl_node_t* node_ = nullptr;
  rcl_lifecycle_state_machine_t sm_;
  bool initialised_ = false;
};

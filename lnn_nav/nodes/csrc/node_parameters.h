// ROS parameter services on rcl, as rclcpp's and rclpy's nodes offer them (~/list_parameters, ~/get_parameters,
// ~/get_parameter_types, ~/describe_parameters, ~/set_parameters, ~/set_parameters_atomically), so
// `ros2 param list/get/set/describe/dump` work against the native controller.
//
// The values live in the node's own variables (registered by pointer). A parameter is typed as declared (a
// double takes a double, not an integer, as rclpy declares it); read-only ones (topics, the weights: read at
// start) refuse a change; `check` judges the node's options after a change, and a refusal puts the old value
// back. Every change is announced on /parameter_events (the declared parameters once at start), as rclcpp's
// nodes announce theirs.
#pragma once

#include <stdio.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <rcl/error_handling.h>
#include <rcl/rcl.h>
#include <rmw/qos_profiles.h>
#include <rcl_interfaces/msg/detail/set_parameters_result__functions.h>
#include <rcl_interfaces/msg/detail/floating_point_range__functions.h>
#include <rcl_interfaces/msg/detail/parameter_descriptor__functions.h>
#include <rcl_interfaces/msg/detail/parameter_value__functions.h>
#include <rcl_interfaces/msg/detail/parameter__functions.h>
#include <rcl_interfaces/msg/detail/parameter_event__functions.h>
#include <rcl_interfaces/msg/parameter_event.h>
#include <rcl_interfaces/msg/parameter_type.h>
#include <rcutils/time.h>
#include <rcl_interfaces/srv/describe_parameters.h>
#include <rcl_interfaces/srv/get_parameter_types.h>
#include <rcl_interfaces/srv/get_parameters.h>
#include <rcl_interfaces/srv/list_parameters.h>
#include <rcl_interfaces/srv/set_parameters.h>
#include <rcl_interfaces/srv/set_parameters_atomically.h>
#include <rosidl_runtime_c/primitives_sequence_functions.h>
#include <rosidl_runtime_c/string_functions.h>

class NodeParameters {
 public:
  // "" when the node's options are valid after a change to `name`, else why not.
  using Check = std::function<std::string(const std::string& name)>;
  static constexpr size_t kServices = 6;

  // A double in [low, high] (the Python node's declared range: describe reports it, set enforces it).
  void add(const std::string& name, double* value, bool read_only, const std::string& description, double low,
           double high) {
    entries_.push_back({name, rcl_interfaces__msg__ParameterType__PARAMETER_DOUBLE, value, nullptr, nullptr,
                        read_only, description, low, high});
  }
  void add(const std::string& name, bool* value, bool read_only, const std::string& description) {
    entries_.push_back({name, rcl_interfaces__msg__ParameterType__PARAMETER_BOOL, nullptr, value, nullptr,
                        read_only, description, 0.0, 0.0});
  }
  void add(const std::string& name, std::string* value, bool read_only, const std::string& description) {
    entries_.push_back({name, rcl_interfaces__msg__ParameterType__PARAMETER_STRING, nullptr, nullptr, value,
                        read_only, description, 0.0, 0.0});
  }

  bool init(rcl_node_t* node, std::string& err) {
    node_ = node;
    rcl_service_options_t options = rcl_service_get_default_options();
    options.qos = rmw_qos_profile_parameters;  // rclcpp's parameter services' QoS
    struct Spec {
      rcl_service_t* srv;
      const rosidl_service_type_support_t* ts;
      const char* name;
    };
    const Spec specs[kServices] = {
        {&list_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, ListParameters), "~/list_parameters"},
        {&get_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, GetParameters), "~/get_parameters"},
        {&types_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, GetParameterTypes), "~/get_parameter_types"},
        {&describe_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, DescribeParameters), "~/describe_parameters"},
        {&set_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, SetParameters), "~/set_parameters"},
        {&atomic_, ROSIDL_GET_SRV_TYPE_SUPPORT(rcl_interfaces, srv, SetParametersAtomically),
         "~/set_parameters_atomically"},
    };
    for (const Spec& s : specs) {
      *s.srv = rcl_get_zero_initialized_service();
      if (rcl_service_init(s.srv, node, s.ts, s.name, &options) != RCL_RET_OK) {
        err = std::string("the parameter service ") + s.name + ": " + rcl_get_error_string().str;
        rcl_reset_error();
        fini();
        return false;
      }
      started_.push_back(s.srv);
    }
    rcl_publisher_options_t events = rcl_publisher_get_default_options();
    events.qos = rmw_qos_profile_parameter_events;
    events_ = rcl_get_zero_initialized_publisher();
    if (rcl_publisher_init(&events_, node, ROSIDL_GET_MSG_TYPE_SUPPORT(rcl_interfaces, msg, ParameterEvent),
                           "/parameter_events", &events) != RCL_RET_OK) {
      err = std::string("the /parameter_events publisher: ") + rcl_get_error_string().str;
      rcl_reset_error();
      fini();
      return false;
    }
    std::vector<const Entry*> all;
    for (const Entry& e : entries_) all.push_back(&e);
    announce(all, true);
    return true;
  }

  void fini() {
    for (rcl_service_t* srv : started_)
      if (rcl_service_fini(srv, node_) != RCL_RET_OK) rcl_reset_error();
    started_.clear();
    if (rcl_publisher_is_valid(&events_) && rcl_publisher_fini(&events_, node_) != RCL_RET_OK) rcl_reset_error();
    rcl_reset_error();  // (rcl_publisher_is_valid sets one for a publisher never made)
  }

  rcl_ret_t add_to(rcl_wait_set_t* wait_set) {
    for (rcl_service_t* srv : started_) {
      const rcl_ret_t rc = rcl_wait_set_add_service(wait_set, srv, nullptr);
      if (rc != RCL_RET_OK) return rc;
    }
    return RCL_RET_OK;
  }

  // Answers every pending request.
  void serve(const Check& check) {
    rmw_request_id_t id;
    {
      rcl_interfaces__srv__ListParameters_Request req{};
      rcl_interfaces__srv__ListParameters_Request__init(&req);
      while (rcl_take_request(&list_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__ListParameters_Response resp{};
        rcl_interfaces__srv__ListParameters_Response__init(&resp);
        std::vector<const Entry*> listed;
        for (const Entry& e : entries_)
          if (listed_under(e.name, req.prefixes)) listed.push_back(&e);
        rosidl_runtime_c__String__Sequence__init(&resp.result.names, listed.size());
        for (size_t i = 0; i < listed.size(); ++i)
          rosidl_runtime_c__String__assign(&resp.result.names.data[i], listed[i]->name.c_str());
        respond(&list_, id, &resp);
        rcl_interfaces__srv__ListParameters_Response__fini(&resp);
      }
      rcl_interfaces__srv__ListParameters_Request__fini(&req);
    }
    {
      rcl_interfaces__srv__GetParameters_Request req{};
      rcl_interfaces__srv__GetParameters_Request__init(&req);
      while (rcl_take_request(&get_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__GetParameters_Response resp{};
        rcl_interfaces__srv__GetParameters_Response__init(&resp);
        // An undeclared name among them: an empty answer, as rclpy and rclcpp give.
        const size_t n = all_declared(req.names) ? req.names.size : 0;
        rcl_interfaces__msg__ParameterValue__Sequence__init(&resp.values, n);
        for (size_t i = 0; i < n; ++i) fill(resp.values.data[i], *find(req.names.data[i].data));
        respond(&get_, id, &resp);
        rcl_interfaces__srv__GetParameters_Response__fini(&resp);
      }
      rcl_interfaces__srv__GetParameters_Request__fini(&req);
    }
    {
      rcl_interfaces__srv__GetParameterTypes_Request req{};
      rcl_interfaces__srv__GetParameterTypes_Request__init(&req);
      while (rcl_take_request(&types_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__GetParameterTypes_Response resp{};
        rcl_interfaces__srv__GetParameterTypes_Response__init(&resp);
        const size_t n = all_declared(req.names) ? req.names.size : 0;
        rosidl_runtime_c__uint8__Sequence__init(&resp.types, n);  // (its data is not zeroed: every one is set)
        for (size_t i = 0; i < n; ++i) resp.types.data[i] = find(req.names.data[i].data)->type;
        respond(&types_, id, &resp);
        rcl_interfaces__srv__GetParameterTypes_Response__fini(&resp);
      }
      rcl_interfaces__srv__GetParameterTypes_Request__fini(&req);
    }
    {
      rcl_interfaces__srv__DescribeParameters_Request req{};
      rcl_interfaces__srv__DescribeParameters_Request__init(&req);
      while (rcl_take_request(&describe_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__DescribeParameters_Response resp{};
        rcl_interfaces__srv__DescribeParameters_Response__init(&resp);
        const size_t n = all_declared(req.names) ? req.names.size : 0;
        rcl_interfaces__msg__ParameterDescriptor__Sequence__init(&resp.descriptors, n);
        for (size_t i = 0; i < n; ++i) {
          rcl_interfaces__msg__ParameterDescriptor& d = resp.descriptors.data[i];
          const Entry* e = find(req.names.data[i].data);
          rosidl_runtime_c__String__assign(&d.name, e->name.c_str());
          d.type = e->type;
          d.read_only = e->read_only;
          d.dynamic_typing = false;
          rosidl_runtime_c__String__assign(&d.description, e->description.c_str());
          if (e->d) {
            rcl_interfaces__msg__FloatingPointRange__Sequence__init(&d.floating_point_range, 1);
            d.floating_point_range.data[0].from_value = e->low;
            d.floating_point_range.data[0].to_value = e->high;
            d.floating_point_range.data[0].step = 0.0;
          }
        }
        respond(&describe_, id, &resp);
        rcl_interfaces__srv__DescribeParameters_Response__fini(&resp);
      }
      rcl_interfaces__srv__DescribeParameters_Request__fini(&req);
    }
    {
      rcl_interfaces__srv__SetParameters_Request req{};
      rcl_interfaces__srv__SetParameters_Request__init(&req);
      while (rcl_take_request(&set_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__SetParameters_Response resp{};
        rcl_interfaces__srv__SetParameters_Response__init(&resp);
        rcl_interfaces__msg__SetParametersResult__Sequence__init(&resp.results, req.parameters.size);
        for (size_t i = 0; i < req.parameters.size; ++i) {  // each on its own, in order
          const std::string why = set_all(&req.parameters.data[i], 1, check);
          resp.results.data[i].successful = why.empty();
          rosidl_runtime_c__String__assign(&resp.results.data[i].reason, why.c_str());
        }
        respond(&set_, id, &resp);
        rcl_interfaces__srv__SetParameters_Response__fini(&resp);
      }
      rcl_interfaces__srv__SetParameters_Request__fini(&req);
    }
    {
      rcl_interfaces__srv__SetParametersAtomically_Request req{};
      rcl_interfaces__srv__SetParametersAtomically_Request__init(&req);
      while (rcl_take_request(&atomic_, &id, &req) == RCL_RET_OK) {
        rcl_interfaces__srv__SetParametersAtomically_Response resp{};
        rcl_interfaces__srv__SetParametersAtomically_Response__init(&resp);
        const std::string why = set_all(req.parameters.data, req.parameters.size, check);
        resp.result.successful = why.empty();
        rosidl_runtime_c__String__assign(&resp.result.reason, why.c_str());
        respond(&atomic_, id, &resp);
        rcl_interfaces__srv__SetParametersAtomically_Response__fini(&resp);
      }
      rcl_interfaces__srv__SetParametersAtomically_Request__fini(&req);
    }
  }

 private:
  struct Entry {
    std::string name;
    uint8_t type;
    double* d;
    bool* b;
    std::string* s;
    bool read_only;
    std::string description;
    double low, high;  // doubles only
  };
  struct Saved {
    Entry* e;
    double d;
    bool b;
    std::string s;
  };

  bool all_declared(const rosidl_runtime_c__String__Sequence& names) {
    for (size_t i = 0; i < names.size; ++i)
      if (find(names.data[i].data) == nullptr) return false;
    return true;
  }

  Entry* find(const char* name) {
    for (Entry& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }

  static bool listed_under(const std::string& name, const rosidl_runtime_c__String__Sequence& prefixes) {
    if (prefixes.size == 0) return true;
    for (size_t i = 0; i < prefixes.size; ++i) {
      const std::string p = prefixes.data[i].data;
      if (name == p || name.rfind(p + ".", 0) == 0) return true;
    }
    return false;
  }

  static void fill(rcl_interfaces__msg__ParameterValue& v, const Entry& e) {
    v.type = e.type;
    if (e.d) v.double_value = *e.d;
    if (e.b) v.bool_value = *e.b;
    if (e.s) rosidl_runtime_c__String__assign(&v.string_value, e.s->c_str());
  }

  static const char* type_name(uint8_t t) {
    switch (t) {
      case rcl_interfaces__msg__ParameterType__PARAMETER_BOOL: return "bool";
      case rcl_interfaces__msg__ParameterType__PARAMETER_INTEGER: return "integer";
      case rcl_interfaces__msg__ParameterType__PARAMETER_DOUBLE: return "double";
      case rcl_interfaces__msg__ParameterType__PARAMETER_STRING: return "string";
      default: return "another type";
    }
  }

  // Sets `n` parameters all or none; "" on success, else why (the first refusal; nothing changed).
  std::string set_all(const rcl_interfaces__msg__Parameter* params, size_t n, const Check& check) {
    std::vector<Saved> saved;
    std::string why;
    for (size_t i = 0; i < n && why.empty(); ++i) {
      const std::string name = params[i].name.data;
      const rcl_interfaces__msg__ParameterValue& v = params[i].value;
      Entry* e = find(name.c_str());
      if (e == nullptr) {
        why = "parameter '" + name + "' is not declared";
      } else if (e->read_only) {
        why = "parameter '" + name + "' is read-only: it is read at start-up (restart the node to change it)";
      } else if (v.type != e->type) {
        why = "parameter '" + name + "' is a " + type_name(e->type) + ", not " + type_name(v.type);
      } else if (e->d && !(std::isfinite(v.double_value) && v.double_value >= e->low && v.double_value <= e->high)) {
        char range[96];
        snprintf(range, sizeof(range), "[%g, %g]", e->low, e->high);
        why = "parameter '" + name + "' must be in " + range;
      } else {
        saved.push_back({e, e->d ? *e->d : 0.0, e->b ? *e->b : false, e->s ? *e->s : std::string()});
        if (e->d) *e->d = v.double_value;
        if (e->b) *e->b = v.bool_value;
        if (e->s) *e->s = v.string_value.data;
      }
    }
    // The node's options judged once, on the final values (max_dt >= 1 / expected_rate ties two together).
    if (why.empty()) why = check(n == 1 ? std::string(params[0].name.data) : std::string());
    if (!why.empty()) {
      for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
        if (it->e->d) *it->e->d = it->d;
        if (it->e->b) *it->e->b = it->b;
        if (it->e->s) *it->e->s = it->s;
      }
      return why;
    }
    std::vector<const Entry*> changed;
    for (size_t i = 0; i < n; ++i) {
      fprintf(stderr, "native_controller: parameter %s set\n", params[i].name.data);
      changed.push_back(find(params[i].name.data));
    }
    announce(changed, false);
    return why;
  }

  // A ParameterEvent for `entries` (new at start, else changed), stamped with the system time.
  void announce(const std::vector<const Entry*>& entries, bool as_new) {
    rcl_interfaces__msg__ParameterEvent ev{};
    rcl_interfaces__msg__ParameterEvent__init(&ev);
    rcutils_time_point_value_t now = 0;
    if (rcutils_system_time_now(&now) != RCUTILS_RET_OK) now = 0;
    ev.stamp.sec = static_cast<int32_t>(now / 1000000000LL);
    ev.stamp.nanosec = static_cast<uint32_t>(now % 1000000000LL);
    rosidl_runtime_c__String__assign(&ev.node, rcl_node_get_fully_qualified_name(node_));
    rcl_interfaces__msg__Parameter__Sequence& list = as_new ? ev.new_parameters : ev.changed_parameters;
    rcl_interfaces__msg__Parameter__Sequence__fini(&list);
    rcl_interfaces__msg__Parameter__Sequence__init(&list, entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      rosidl_runtime_c__String__assign(&list.data[i].name, entries[i]->name.c_str());
      fill(list.data[i].value, *entries[i]);
    }
    if (rcl_publish(&events_, &ev, nullptr) != RCL_RET_OK) rcl_reset_error();
    rcl_interfaces__msg__ParameterEvent__fini(&ev);
  }

  static void respond(rcl_service_t* srv, rmw_request_id_t& id, void* resp) {
    if (rcl_send_response(srv, &id, resp) != RCL_RET_OK) rcl_reset_error();
  }

  rcl_node_t* node_ = nullptr;
  std::vector<Entry> entries_;
  std::vector<rcl_service_t*> started_;
  rcl_service_t list_, get_, types_, describe_, set_, atomic_;
  rcl_publisher_t events_ = rcl_get_zero_initialized_publisher();
};

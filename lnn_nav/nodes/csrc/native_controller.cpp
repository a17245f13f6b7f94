// The controller node without Python or torch: rcl (the C client library under rclpy and rclcpp) around
// the torch-free policy runtime (lnn_nav/kernels/csrc/policy_runtime.cpp). It flies what the Python
// controller node flies, with the same commands, and keeps its fail-safes:
//   * each camera frame (rgb8, bgr8, rgba8, bgra8, mono8; at the policy's input size or larger, shrunk as
//     the Python node's cv2.resize(INTER_AREA) shrinks it, pixel for pixel) -> one TwistStamped on the
//     command topic, stamped with the frame's stamp, frame "base_link";
//   * Δt from the frame stamps: the first frame, a stamp that goes back or a gap over max_dt get the
//     nominal Δt, and the latter two restart the recurrent state;
//   * a goal policy flies to the latched goal (/goal_pose, in the odometry's frame) from /odom;
//   * hover (zero command) while the camera is older than image_timeout (at failsafe_rate, stamped now),
//     and for every frame while the odometry or the goal is missing or stale; a non-finite output is a
//     zero command and a state restart; commands are clamped (horizontal speed by norm, the rest per axis);
//   * ~/enable (std_srvs/SetBool): false is an e-stop (a zero at once, then a zero for every frame, the
//     network not advanced) until true, which restarts the network from rest; ~/reset_state (Trigger);
//   * frames it cannot read are dropped and counted, never flown; SIGINT/SIGTERM end it with a final zero.
//   * /diagnostics once a second: OK flying, WARN e-stop, ERROR fail-safe hover, with its counters, frame
//     rate and step latency, as the Python node publishes them;
//   * --use-sim-time: input ages and hover stamps on /clock (a lockstep simulator's time), as the Python
//     node's use_sim_time; --sync-inputs: a goal policy's frame waits (up to --sync-timeout wall seconds)
//     for the odometry stamped with it, so a simulator's flight repeats step for step;
//   * its options are the Python node's ROS parameters too (--ros-args --params-file config/controller.yaml,
//     -p max_speed_xy:=3.0): one YAML serves both nodes; a flag on the command line wins over a parameter.
//   * the managed-node lifecycle (node_lifecycle.h): autostart (default) configures and activates it at
//     start; only 'active' commands; deactivate and shutdown send one zero; --no-autostart / autostart:=false
//     waits for a lifecycle manager.
//   * CameraInfo (camera_info_topic, default beside the image) checked against the camera the weights record:
//     a field of view more than 1 deg off is logged and a WARN in /diagnostics, as the Python node does.
//   * parameter services (node_parameters.h): `ros2 param list/get/set/describe`; the limits, timeouts, rates
//     and input sync change while it flies, the weights, topics and clock are read-only.
//     Changes are announced on /parameter_events.
// Not here (yet): IMU policies, frames smaller than the policy's input.
//
//   native_controller --weights W.native.safetensors [--image-topic T] [--cmd-topic T] [--odom-topic T]
//       [--goal-topic T] [--max-speed-xy 6] [--max-speed-z 3] [--max-yaw-rate 2.0944] [--image-timeout 0.25]
//       [--odom-timeout 0.25] [--failsafe-rate 20] [--expected-rate 15] [--max-dt 0.5] [--ros-args ...]
//
// Built by lnn_nav/nodes/native.py (`lnn-nav native-node`), which also runs it.

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <diagnostic_msgs/msg/detail/diagnostic_status__functions.h>
#include <diagnostic_msgs/msg/detail/key_value__functions.h>
#include <diagnostic_msgs/msg/diagnostic_array.h>
#include <geometry_msgs/msg/pose_stamped.h>
#include <geometry_msgs/msg/twist_stamped.h>
#include <nav_msgs/msg/odometry.h>
#include <rcl/error_handling.h>
#include <rcl/arguments.h>
#include <rcl/rcl.h>
#include <rcl_yaml_param_parser/parser.h>
#include <rcutils/time.h>
#include <rosgraph_msgs/msg/clock.h>
#include <rmw/qos_profiles.h>
#include <rosidl_runtime_c/string_functions.h>
#include <sensor_msgs/msg/camera_info.h>
#include <sensor_msgs/msg/image.h>
#include <std_srvs/srv/set_bool.h>
#include <std_srvs/srv/trigger.h>

#include "node_lifecycle.h"
#include "node_parameters.h"
#include "policy_runtime.h"

namespace {

volatile sig_atomic_t g_running = 1;
void on_signal(int) { g_running = 0; }

// ---------------------------------------------------------------- a small JSON reader (safetensors header)
struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  double number = 0.0;
  std::string text;
  std::vector<Json> items;
  std::map<std::string, Json> fields;
  const Json* get(const std::string& key) const {
    auto it = fields.find(key);
    return it == fields.end() ? nullptr : &it->second;
  }
};

struct JsonParser {
  const std::string& s;
  size_t i = 0;
  bool ok = true;
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  }
  bool eat(char c) {
    ws();
    if (i < s.size() && s[i] == c) {
      ++i;
      return true;
    }
    return false;
  }
  std::string str() {
    std::string out;
    if (!eat('"')) {
      ok = false;
      return out;
    }
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c == '\\' && i < s.size()) {
        char e = s[i++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'u':  // the metadata is ASCII; keep any other code point as '?'
            i += 4;
            out += '?';
            break;
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    if (i >= s.size()) ok = false;
    ++i;
    return out;
  }
  Json value(int depth = 0) {
    Json v;
    ws();
    if (!ok || i >= s.size() || depth > 32) {
      ok = false;
      return v;
    }
    char c = s[i];
    if (c == '{') {
      ++i;
      v.kind = Json::kObject;
      if (eat('}')) return v;
      do {
        std::string key = str();
        if (!eat(':')) ok = false;
        v.fields[key] = value(depth + 1);
      } while (ok && eat(','));
      if (!eat('}')) ok = false;
    } else if (c == '[') {
      ++i;
      v.kind = Json::kArray;
      if (eat(']')) return v;
      do {
        v.items.push_back(value(depth + 1));
      } while (ok && eat(','));
      if (!eat(']')) ok = false;
    } else if (c == '"') {
      v.kind = Json::kString;
      v.text = str();
    } else if (s.compare(i, 4, "true") == 0) {
      v.kind = Json::kBool;
      v.boolean = true;
      i += 4;
    } else if (s.compare(i, 5, "false") == 0) {
      v.kind = Json::kBool;
      i += 5;
    } else if (s.compare(i, 4, "null") == 0) {
      i += 4;
    } else {
      char* end = nullptr;
      v.kind = Json::kNumber;
      v.number = std::strtod(s.c_str() + i, &end);
      if (end == s.c_str() + i) ok = false;
      i = static_cast<size_t>(end - s.c_str());
    }
    return v;
  }
};

bool parse_json(const std::string& text, Json& out) {
  JsonParser p{text};
  out = p.value();
  p.ws();
  return p.ok && p.i == text.size();
}

// ---------------------------------------------------------------- the weights file
struct Weights {
  std::vector<int64_t> encoder_meta, core_meta;
  std::vector<double> encoder_eps;
  std::vector<float> encoder_packed, core_packed;
  bool use_imu = false, use_goal = false;
  float goal_clip = 10.0f;
  int height = 0, width = 0, channels = 0;
  double camera_hfov = NAN;  // deg; NaN: the file does not record its camera
};

template <typename T>
bool read_array(const Json& header, const std::string& data, const char* name, const char* dtype,
                std::vector<T>& out, std::string& err) {
  const Json* entry = header.get(name);
  const Json* kind = entry ? entry->get("dtype") : nullptr;
  const Json* offsets = entry ? entry->get("data_offsets") : nullptr;
  if (!kind || kind->text != dtype || !offsets || offsets->items.size() != 2) {
    err = std::string("no ") + dtype + " array '" + name + "'";
    return false;
  }
  const auto a = static_cast<size_t>(offsets->items[0].number), b = static_cast<size_t>(offsets->items[1].number);
  if (b < a || b > data.size() || (b - a) % sizeof(T) != 0) {
    err = std::string("array '") + name + "' lies outside the file";
    return false;
  }
  out.resize((b - a) / sizeof(T));
  std::memcpy(out.data(), data.data() + a, b - a);  // safetensors is little-endian, as every target here
  return true;
}

bool load_weights(const std::string& path, Weights& w, std::string& err) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    err = "cannot open " + path;
    return false;
  }
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (bytes.size() < 8) {
    err = path + " is not a safetensors file (too short)";
    return false;
  }
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) {
    err = path + " is not a safetensors file (header length beyond the file)";
    return false;
  }
  if (n > 100000000 || n < 2 || bytes[8] != '{') {  // safetensors' own cap; a header is a JSON object
    err = path + " is not a safetensors file (its header is not a JSON object of at most 100 MB)";
    return false;
  }
  Json header;
  if (!parse_json(bytes.substr(8, n), header) || header.kind != Json::kObject) {
    err = path + " is not a safetensors file (its header is not JSON)";
    return false;
  }
  const Json* meta = header.get("__metadata__");
  const Json* native = meta ? meta->get("lnn_nav_native") : nullptr;
  Json m;
  if (!native || native->kind != Json::kString || !parse_json(native->text, m)) {
    err = path + " has no lnn_nav_native metadata: export it with `lnn-nav export CKPT --format native`";
    return false;
  }
  const Json* format = m.get("format");
  if (!format || format->number != 1) {
    err = path + ": native weights format other than 1";
    return false;
  }
  const std::string data = bytes.substr(8 + n);
  if (!read_array(header, data, "encoder_meta", "I64", w.encoder_meta, err) ||
      !read_array(header, data, "encoder_eps", "F64", w.encoder_eps, err) ||
      !read_array(header, data, "encoder_packed", "F32", w.encoder_packed, err) ||
      !read_array(header, data, "core_meta", "I64", w.core_meta, err) ||
      !read_array(header, data, "core_packed", "F32", w.core_packed, err)) {
    err = path + ": " + err;
    return false;
  }
  auto num = [&m](const char* key) {
    const Json* v = m.get(key);
    return v ? (v->kind == Json::kBool ? (v->boolean ? 1.0 : 0.0) : v->number) : 0.0;
  };
  w.use_imu = num("use_imu") != 0.0;
  w.use_goal = num("use_goal") != 0.0;
  w.goal_clip = static_cast<float>(num("goal_clip"));
  w.height = static_cast<int>(num("height"));
  w.width = static_cast<int>(num("width"));
  w.channels = static_cast<int>(num("channels"));
  const Json* hfov = m.get("camera_hfov_deg");
  if (hfov && hfov->kind == Json::kNumber) w.camera_hfov = hfov->number;
  return true;
}

// ---------------------------------------------------------------- options
struct Options {
  std::string weights, image_topic = "/camera/image_raw", cmd_topic = "/cmd_vel", odom_topic = "/odom",
                       goal_topic = "/goal_pose", camera_info_topic;  // empty: camera_info beside the image
  double max_speed_xy = 6.0, max_speed_z = 3.0, max_yaw_rate = 2.0943951023931953;  // 120 deg/s
  double image_timeout = 0.25, odom_timeout = 0.25, failsafe_rate = 20.0, expected_rate = 15.0, max_dt = 0.5;
  double sync_timeout = 0.05;
  bool use_sim_time = false, sync_inputs = false, autostart = true;
};

// A command-line flag's ROS parameter: --max-speed-xy -> max_speed_xy (the Python node's names).
std::string flag_parameter(const std::string& flag) {
  if (flag == "--failsafe-rate") return "failsafe_rate_hz";
  std::string name = flag.substr(2);
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

struct OptionTable {
  std::map<std::string, double*> numbers;
  std::map<std::string, bool*> switches;
  std::map<std::string, std::string*> texts;
};

OptionTable option_table(Options& o) {  // keyed by ROS parameter name
  return OptionTable{
      {{"max_speed_xy", &o.max_speed_xy}, {"max_speed_z", &o.max_speed_z}, {"max_yaw_rate", &o.max_yaw_rate},
       {"image_timeout", &o.image_timeout}, {"odom_timeout", &o.odom_timeout},
       {"failsafe_rate_hz", &o.failsafe_rate}, {"expected_rate", &o.expected_rate}, {"max_dt", &o.max_dt},
       {"sync_timeout", &o.sync_timeout}},
      {{"use_sim_time", &o.use_sim_time}, {"sync_inputs", &o.sync_inputs}, {"autostart", &o.autostart}},
      {{"weights", &o.weights}, {"image_topic", &o.image_topic}, {"cmd_topic", &o.cmd_topic},
       {"odom_topic", &o.odom_topic}, {"goal_topic", &o.goal_topic}, {"camera_info_topic", &o.camera_info_topic}}};
}

// Flags before --ros-args; `given` collects the parameters they set (a flag wins over a ROS parameter).
bool parse_options(int argc, char** argv, Options& o, std::set<std::string>& given, std::string& err) {
  OptionTable t = option_table(o);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--ros-args") break;  // rcl's own arguments from here on
    const std::string name = a.rfind("--", 0) == 0 ? flag_parameter(a) : std::string();
    if (name == "no_autostart") {  // wait in 'unconfigured' for a lifecycle manager
      o.autostart = false;
      given.insert("autostart");
      continue;
    }
    if (t.switches.count(name) && name != "autostart") {
      *t.switches[name] = true;
      given.insert(name);
      continue;
    }
    if (!t.texts.count(name) && !t.numbers.count(name)) {
      err = "unknown option " + a;
      return false;
    }
    if (i + 1 >= argc) {
      err = "option " + a + " needs a value";
      return false;
    }
    if (t.texts.count(name)) {
      *t.texts[name] = argv[++i];
    } else {
      char* end = nullptr;
      double v = std::strtod(argv[++i], &end);
      if (*end != '\0' || !std::isfinite(v) || v < 0) {
        err = "option " + a + " needs a number >= 0, got '" + argv[i] + "'";
        return false;
      }
      *t.numbers[name] = v;
    }
    given.insert(name);
  }
  return true;
}

// rclcpp's matching of a parameter file's node names (after a leading '/' is added to a bare name): segment by
// segment, "**" any number of segments (none included: "/**/controller_node" matches "/controller_node"), "*"
// exactly one, anything else itself.
bool node_name_matches(const std::string& pattern, const std::string& name) {
  auto split = [](const std::string& path) {
    std::vector<std::string> out;
    size_t at = 0;
    while (at <= path.size()) {
      const size_t next = path.find('/', at);
      const std::string seg = path.substr(at, next == std::string::npos ? std::string::npos : next - at);
      if (!seg.empty()) out.push_back(seg);
      if (next == std::string::npos) break;
      at = next + 1;
    }
    return out;
  };
  const std::vector<std::string> p = split(pattern), n = split(name);
  std::function<bool(size_t, size_t)> match = [&](size_t i, size_t j) -> bool {
    if (i == p.size()) return j == n.size();
    if (p[i] == "**") return match(i + 1, j) || (j < n.size() && match(i, j + 1));
    return j < n.size() && (p[i] == "*" || p[i] == n[j]) && match(i + 1, j + 1);
  };
  return match(0, 0);
}

// The Python controller's parameters this node has no use for (torch, lifecycle, saliency): accepted from the
// shared config/controller.yaml and left alone; image_transport and model_path are checked.
const std::set<std::string> kPythonOnly = {"model_path",    "allow_untrained", "device",
                                           "imu_timeout", "torch_threads", "executor",
                                           "raw_io",       "publish_saliency", "image_transport"};

// ROS parameters (--ros-args --params-file F / -p name:=value; the Python node's names, so one YAML serves
// both nodes) over the defaults, under the flags given on the command line. Later entries win, as in rclcpp.
bool apply_parameters(const rcl_context_t& context, const rcl_node_t& node, Options& o,
                      const std::set<std::string>& given, std::string& err) {
  rcl_params_t* params = nullptr;
  if (rcl_arguments_get_param_overrides(&context.global_arguments, &params) != RCL_RET_OK) {
    err = std::string("reading the parameter overrides: ") + rcl_get_error_string().str;
    rcl_reset_error();
    return false;
  }
  if (!params) return true;
  std::unique_ptr<rcl_params_t, void (*)(rcl_params_t*)> owned(params, rcl_yaml_node_struct_fini);
  OptionTable t = option_table(o);
  const char* fqn = rcl_node_get_fully_qualified_name(&node);
  std::string model_path;
  for (size_t n = 0; n < params->num_nodes; ++n) {
    // A file's "controller_node:" is "/controller_node" (rclcpp's reading: a name without a namespace is absolute).
    std::string pattern = params->node_names[n];
    if (pattern.empty() || pattern[0] != '/') pattern = "/" + pattern;
    if (!node_name_matches(pattern, fqn)) continue;
    const rcl_node_params_t& np = params->params[n];
    for (size_t k = 0; k < np.num_params; ++k) {
      const std::string name = np.parameter_names[k];
      const rcl_variant_t& v = np.parameter_values[k];
      if (given.count(name)) continue;
      if (t.numbers.count(name)) {
        double x = v.double_value ? *v.double_value : v.integer_value ? static_cast<double>(*v.integer_value) : NAN;
        if (!std::isfinite(x) || x < 0) {
          err = "parameter " + name + " needs a number >= 0";
          return false;
        }
        *t.numbers[name] = x;
      } else if (t.switches.count(name)) {
        if (!v.bool_value) {
          err = "parameter " + name + " needs true or false";
          return false;
        }
        *t.switches[name] = *v.bool_value;
      } else if (t.texts.count(name)) {
        if (!v.string_value) {
          err = "parameter " + name + " needs a string";
          return false;
        }
        *t.texts[name] = v.string_value;
      } else if (name == "image_transport") {
        if (!v.string_value || std::string(v.string_value) != "raw") {
          err = "image_transport: the native node reads raw frames only (the Python node decodes compressed ones)";
          return false;
        }
      } else if (name == "model_path") {
        model_path = v.string_value ? v.string_value : "";
      } else if (!kPythonOnly.count(name)) {
        fprintf(stderr, "native_controller: unknown parameter %s ignored\n", name.c_str());
      }
    }
  }
  if (o.weights.empty() && !model_path.empty())
    err = "model_path is a PyTorch checkpoint; the native node flies exported weights: `lnn-nav export " +
          model_path + " --format native --out P`, then weights:=P.native.safetensors";
  return err.empty();
}

// The Python node's declared ranges of its numeric parameters (lnn_nav/nodes/controller.py, RANGED): the same
// values are refused at start and by `ros2 param set`.
const std::map<std::string, std::pair<double, double>> kRanges = {
    {"expected_rate", {1.0, 1000.0}}, {"max_dt", {0.001, 10.0}},         {"max_speed_xy", {0.0, 50.0}},
    {"max_speed_z", {0.0, 20.0}},     {"max_yaw_rate", {0.0, 10.0}},     {"failsafe_rate_hz", {1.0, 200.0}},
    {"image_timeout", {0.01, 10.0}},  {"odom_timeout", {0.01, 10.0}},    {"sync_timeout", {0.001, 1.0}}};

bool validate_options(Options& o, std::string& err) {
  for (const auto& [name, value] : option_table(o).numbers) {
    const auto& [low, high] = kRanges.at(name);
    if (!(*value >= low && *value <= high)) {
      char text[160];
      snprintf(text, sizeof(text), "%s must be in [%g, %g], got %g", name.c_str(), low, high, *value);
      err = text;
      return false;
    }
  }
  if (o.weights.empty()) err = "--weights (or the weights parameter) is required (lnn-nav export CKPT --format native)";
  else if (!(o.failsafe_rate > 0) || !(o.expected_rate > 0)) err = "rates must be > 0";
  else if (!(o.max_dt >= 1.0 / o.expected_rate)) err = "max_dt must be >= 1 / expected_rate";
  return err.empty();
}

// ---------------------------------------------------------------- the camera check
// image_transport's CameraInfo topic for an image topic: camera_info in its namespace (controller_logic).
std::string camera_info_beside(const std::string& image_topic) {
  const size_t slash = image_topic.rfind('/');
  return slash == std::string::npos ? "camera_info" : image_topic.substr(0, slash) + "/camera_info";
}

// Why the camera a CameraInfo describes is not the one the policy was trained with, or "" (controller_logic's
// camera_mismatch: the horizontal field of view from K, 1 deg tolerance; an uncalibrated K of zeros, or weights
// that do not record their camera, cannot be judged).
std::string camera_mismatch(double trained_deg, double fx, uint32_t width) {
  if (!std::isfinite(trained_deg) || !(std::isfinite(fx) && fx > 0) || width == 0) return "";
  const double hfov = 2.0 * std::atan(width / (2.0 * fx)) * 180.0 / M_PI;
  if (std::fabs(hfov - trained_deg) <= 1.0) return "";
  char buf[160];
  snprintf(buf, sizeof(buf), "camera field of view %.1f deg (CameraInfo) differs from the %.1f deg it was trained with",
           hfov, trained_deg);
  return buf;
}

// ---------------------------------------------------------------- the controller's decisions
int64_t system_ns() {
  rcutils_time_point_value_t t = 0;
  return rcutils_system_time_now(&t) == RCUTILS_RET_OK ? t : 0;
}

// The loop's own periods (fail-safe checks, diagnostics, sync timeouts, latency): never simulated time.
int64_t wall_ns() {
  rcutils_time_point_value_t t = 0;
  return rcutils_steady_time_now(&t) == RCUTILS_RET_OK ? t : 0;
}

int64_t stamp_ns(const builtin_interfaces__msg__Time& t) {
  return static_cast<int64_t>(t.sec) * 1000000000LL + static_cast<int64_t>(t.nanosec);
}

// One source pixel's weight in a destination pixel of OpenCV's area resampling (its computeResizeAreaTab, the
// weights in double then stored as float, accumulated in float in table order: the same rounding as cv2.resize).
struct AreaTap {
  int d, s;
  float alpha;
};

std::vector<AreaTap> area_taps(int src, int dst, double scale) {
  std::vector<AreaTap> tab;
  for (int dx = 0; dx < dst; ++dx) {
    const double f1 = dx * scale, f2 = f1 + scale;
    const double cell = std::min(scale, src - f1);
    int s2 = std::min(static_cast<int>(std::floor(f2)), src - 1);
    const int s1 = std::min(static_cast<int>(std::ceil(f1)), s2);
    if (s1 - f1 > 1e-3) tab.push_back({dx, s1 - 1, static_cast<float>((s1 - f1) / cell)});
    for (int sx = s1; sx < s2; ++sx) tab.push_back({dx, sx, static_cast<float>(1.0 / cell)});
    if (f2 - s2 > 1e-3) tab.push_back({dx, s2, static_cast<float>(std::min(std::min(f2 - s2, 1.0), cell) / cell)});
  }
  return tab;
}

// Frame -> RGB at the policy's size, shrunk as the Python node's resize_rgb (cv2.resize, INTER_AREA) shrinks it.
// False (with why) for what the Python node also refuses, and for frames smaller than the policy's input
// (the Python node enlarges those bilinearly).
bool frame_to_rgb(const sensor_msgs__msg__Image& m, int H, int W, std::vector<uint8_t>& rgb, std::string& why) {
  const std::string enc = m.encoding.data ? m.encoding.data : "";
  int channels = 0;
  std::string lower;
  for (char c : enc) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "rgb8" || lower == "bgr8") channels = 3;
  else if (lower == "rgba8" || lower == "bgra8") channels = 4;
  else if (lower == "mono8") channels = 1;
  else {
    why = "image encoding '" + enc + "' is not supported; expected one of rgb8, bgr8, rgba8, bgra8, mono8";
    return false;
  }
  if (m.is_bigendian > 1) {
    why = "is_bigendian must be 0 or 1";
    return false;
  }
  const int64_t h = m.height, w = m.width, step = m.step;
  if (h == 0 || w == 0) {
    why = "image has zero size";
    return false;
  }
  if (step < w * channels || static_cast<uint64_t>(m.data.size) / static_cast<uint64_t>(step) != static_cast<uint64_t>(h) ||
      static_cast<uint64_t>(m.data.size) % static_cast<uint64_t>(step) != 0) {
    why = "image step/data do not match its size";
    return false;
  }
  if (h < H || w < W) {
    why = "the native node shrinks frames to the policy's input size " + std::to_string(W) + "x" + std::to_string(H) +
          " but does not enlarge them, got " + std::to_string(w) + "x" + std::to_string(h);
    return false;
  }
  const bool bgr = lower[0] == 'b';
  const uint8_t* d = m.data.data;
  rgb.resize(static_cast<size_t>(H) * W * 3);
  auto at = [&](int64_t y, int64_t x, int c) {
    return d[y * step + x * channels + (channels == 1 ? 0 : (bgr ? 2 - c : c))];
  };
  // OpenCV's choice (resize, INTER_AREA): its box filter where both scales are whole numbers, else its table.
  const double sx = 1.0 / (static_cast<double>(W) / static_cast<double>(w));
  const double sy = 1.0 / (static_cast<double>(H) / static_cast<double>(h));
  const int64_t kx = static_cast<int64_t>(std::lround(sx)), ky = static_cast<int64_t>(std::lround(sy));
  if (std::fabs(sx - kx) < DBL_EPSILON && std::fabs(sy - ky) < DBL_EPSILON) {
    const float inv = 1.0f / static_cast<float>(kx * ky);
    for (int y = 0; y < H; ++y) {
      for (int x = 0; x < W; ++x) {
        for (int c = 0; c < 3; ++c) {
          int64_t sum = 0;
          for (int64_t dy = 0; dy < ky; ++dy)
            for (int64_t dx = 0; dx < kx; ++dx) sum += at(y * ky + dy, x * kx + dx, c);
          // Its box filter: 2x2 rounds half up (a fast path of its own), other factors half to even.
          const int64_t n = kx * ky;
          int64_t v = n == 1 ? sum
                      : (kx == 2 && ky == 2 ? (sum + 2) >> 2 : static_cast<int64_t>(std::nearbyint(sum * inv)));
          rgb[(static_cast<size_t>(y) * W + x) * 3 + c] = static_cast<uint8_t>(v);
        }
      }
    }
    return true;
  }
  const std::vector<AreaTap> xtab = area_taps(static_cast<int>(w), W, sx), ytab = area_taps(static_cast<int>(h), H, sy);
  std::vector<float> buf(static_cast<size_t>(W)), sum(static_cast<size_t>(W));
  for (int c = 0; c < 3; ++c) {
    auto write = [&](int row) {
      for (int x = 0; x < W; ++x) {
        const float v = std::nearbyint(sum[x]);  // saturate_cast<uchar>: round half to even, then clamp
        rgb[(static_cast<size_t>(row) * W + x) * 3 + c] = static_cast<uint8_t>(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
      }
    };
    std::fill(sum.begin(), sum.end(), 0.0f);
    int prev = ytab.front().d;
    for (const AreaTap& yt : ytab) {
      std::fill(buf.begin(), buf.end(), 0.0f);
      for (const AreaTap& xt : xtab) buf[xt.d] = buf[xt.d] + static_cast<float>(at(yt.s, xt.s, c)) * xt.alpha;
      if (yt.d != prev) {
        write(prev);
        for (int x = 0; x < W; ++x) sum[x] = yt.alpha * buf[x];
        prev = yt.d;
      } else {
        for (int x = 0; x < W; ++x) sum[x] = sum[x] + yt.alpha * buf[x];
      }
    }
    write(prev);
  }
  return true;
}

// lnn_nav.nodes.conversions.goal_input: the world vector to the goal in the body frame (float64, the
// odometry's orientation normalised), then unit direction and distance in float32.
// False for a quaternion of (near) zero norm, which lnn_nav.geometry.quat_to_matrix refuses.
bool goal_input(const nav_msgs__msg__Odometry& odom, const geometry_msgs__msg__PoseStamped& goal, float out[4]) {
  const auto& o = odom.pose.pose.orientation;
  double q[4] = {o.w, o.x, o.y, o.z};
  const double norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  if (!(norm >= 1e-9)) return false;
  for (double& v : q) v = v / norm;
  const double w = q[0], x = q[1], y = q[2], z = q[3];
  const double xx = x * x, yy = y * y, zz = z * z, xy = x * y, xz = x * z, yz = y * z, wx = w * x, wy = w * y,
               wz = w * z;
  const double r[3][3] = {{1.0 - 2.0 * (yy + zz), 2.0 * (xy - wz), 2.0 * (xz + wy)},
                          {2.0 * (xy + wz), 1.0 - 2.0 * (xx + zz), 2.0 * (yz - wx)},
                          {2.0 * (xz - wy), 2.0 * (yz + wx), 1.0 - 2.0 * (xx + yy)}};
  const auto& p = odom.pose.pose.position;
  const auto& g = goal.pose.position;
  const double v[3] = {g.x - p.x, g.y - p.y, g.z - p.z};
  float body[3];
  for (int j = 0; j < 3; ++j) body[j] = static_cast<float>((r[0][j] * v[0] + r[1][j] * v[1]) + r[2][j] * v[2]);
  const float dist = std::sqrt((body[0] * body[0] + body[1] * body[1]) + body[2] * body[2]);
  for (int j = 0; j < 3; ++j) out[j] = dist > 1e-9f ? body[j] / dist : 0.0f;
  out[3] = dist;
  return true;
}

void clamp_command(double c[4], const Options& o) {
  const double speed = std::hypot(c[0], c[1]);
  if (speed > o.max_speed_xy) {
    c[0] *= o.max_speed_xy / speed;
    c[1] *= o.max_speed_xy / speed;
  }
  c[2] = std::fmin(std::fmax(c[2], -o.max_speed_z), o.max_speed_z);
  c[3] = std::fmin(std::fmax(c[3], -o.max_yaw_rate), o.max_yaw_rate);
}

#define CHECK(call)                                                                                 \
  do {                                                                                              \
    rcl_ret_t rc_ = (call);                                                                         \
    if (rc_ != RCL_RET_OK) {                                                                        \
      fprintf(stderr, "native_controller: %s failed: %s\n", #call, rcl_get_error_string().str);     \
      return 1;                                                                                     \
    }                                                                                               \
  } while (0)

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  std::set<std::string> given;
  std::string err;
  if (!parse_options(argc, argv, opt, given, err)) {
    fprintf(stderr, "native_controller: %s\n", err.c_str());
    return 2;
  }
  rcl_allocator_t allocator = rcl_get_default_allocator();
  rcl_init_options_t init_options = rcl_get_zero_initialized_init_options();
  CHECK(rcl_init_options_init(&init_options, allocator));
  rcl_context_t context = rcl_get_zero_initialized_context();
  CHECK(rcl_init(argc, const_cast<const char* const*>(argv), &init_options, &context));
  rcl_node_t node = rcl_get_zero_initialized_node();
  rcl_node_options_t node_options = rcl_node_get_default_options();
  CHECK(rcl_node_init(&node, "native_controller", "", &context, &node_options));
  // The node's own name (a launch file may remap it: __node:=controller_node takes controller_node's YAML).
  const std::string node_name = rcl_node_get_name(&node);
  // Refusals from here on leave rcl as the normal exit does (the middleware's threads outlive main otherwise
  // and abort the process on the way out).
  auto refuse = [&](const std::string& why) {
    fprintf(stderr, "native_controller: %s\n", why.c_str());
    (void)rcl_node_fini(&node);
    (void)rcl_shutdown(&context);
    (void)rcl_context_fini(&context);
    (void)rcl_init_options_fini(&init_options);
    return 2;
  };
  Weights wts;
  if (!apply_parameters(context, node, opt, given, err) || !validate_options(opt, err) ||
      !load_weights(opt.weights, wts, err))
    return refuse(err);
  if (wts.use_imu) return refuse("IMU policies are not flown by the native node yet; use the Python one");
  std::unique_ptr<void, void (*)(void*)> rt(
      lnn_rt_create(wts.encoder_meta.data(), static_cast<int64_t>(wts.encoder_meta.size()), wts.encoder_eps.data(),
                    static_cast<int64_t>(wts.encoder_eps.size()), wts.encoder_packed.data(),
                    static_cast<int64_t>(wts.encoder_packed.size()), wts.core_meta.data(),
                    static_cast<int64_t>(wts.core_meta.size()), wts.core_packed.data(),
                    static_cast<int64_t>(wts.core_packed.size()), 0, wts.use_goal ? 1 : 0, wts.goal_clip),
      lnn_rt_destroy);
  if (!rt) return refuse(opt.weights + ": " + lnn_rt_last_error());
  const int H = static_cast<int>(lnn_rt_size(rt.get(), 1)), W = static_cast<int>(lnn_rt_size(rt.get(), 2));
  const int S = static_cast<int>(lnn_rt_size(rt.get(), 0));
  if (lnn_rt_size(rt.get(), 3) != 3)
    return refuse(opt.weights + " takes " + std::to_string(lnn_rt_size(rt.get(), 3)) +
                  "-channel frames; the node feeds RGB");
  NodeLifecycle lifecycle;  // before the node's own endpoints: refuse() finalises the node alone
  if (!lifecycle.init(&node, err)) return refuse(err);
  // The parameter services over the options: what the loop reads on every frame or check can change while it
  // flies; what shaped the node at start (weights, topics, the clock, the fail-safe timer's rate) is read-only.
  NodeParameters parameters;
  parameters.add("weights", &opt.weights, true, "native weights file (lnn-nav export CKPT --format native)");
  parameters.add("image_topic", &opt.image_topic, true, "camera image topic");
  parameters.add("camera_info_topic", &opt.camera_info_topic, true, "CameraInfo topic (empty: beside the image)");
  parameters.add("cmd_topic", &opt.cmd_topic, true, "velocity command topic");
  parameters.add("odom_topic", &opt.odom_topic, true, "odometry topic (goal policies)");
  parameters.add("goal_topic", &opt.goal_topic, true, "goal topic (goal policies, latched)");
  parameters.add("max_speed_xy", &opt.max_speed_xy, false, "m/s, horizontal speed limit (by norm)", kRanges.at("max_speed_xy").first,
                 kRanges.at("max_speed_xy").second);
  parameters.add("max_speed_z", &opt.max_speed_z, false, "m/s, vertical speed limit", kRanges.at("max_speed_z").first,
                 kRanges.at("max_speed_z").second);
  parameters.add("max_yaw_rate", &opt.max_yaw_rate, false, "rad/s, yaw rate limit", kRanges.at("max_yaw_rate").first,
                 kRanges.at("max_yaw_rate").second);
  parameters.add("image_timeout", &opt.image_timeout, false, "s; an older camera frame makes the node hover", kRanges.at("image_timeout").first,
                 kRanges.at("image_timeout").second);
  parameters.add("odom_timeout", &opt.odom_timeout, false, "s; older odometry makes a goal policy hover", kRanges.at("odom_timeout").first,
                 kRanges.at("odom_timeout").second);
  parameters.add("failsafe_rate_hz", &opt.failsafe_rate, true, "hover publishing rate while an input is stale",
                 kRanges.at("failsafe_rate_hz").first, kRanges.at("failsafe_rate_hz").second);
  parameters.add("expected_rate", &opt.expected_rate, false, "Hz; the first frame's dt after a (re)start", kRanges.at("expected_rate").first,
                 kRanges.at("expected_rate").second);
  parameters.add("max_dt", &opt.max_dt, false, "s; larger frame gaps reset the recurrent state", kRanges.at("max_dt").first,
                 kRanges.at("max_dt").second);
  parameters.add("sync_inputs", &opt.sync_inputs, false, "each frame waits for odometry stamped with it");
  parameters.add("sync_timeout", &opt.sync_timeout, false, "s (wall); the longest a frame waits for its odometry", kRanges.at("sync_timeout").first,
                 kRanges.at("sync_timeout").second);
  parameters.add("use_sim_time", &opt.use_sim_time, true, "input ages and hover stamps on /clock");
  parameters.add("autostart", &opt.autostart, true, "configure and activate at start");
  if (!parameters.init(&node, err)) {
    lifecycle.fini();
    return refuse(err);
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);

  // The Python node's QoS: camera and odometry best effort keep-last-1, the goal latched, commands reliable.
  rcl_subscription_options_t sensor = rcl_subscription_get_default_options();
  sensor.qos = rmw_qos_profile_sensor_data;
  sensor.qos.depth = 1;
  rcl_subscription_options_t latched = rcl_subscription_get_default_options();
  latched.qos.depth = 1;
  latched.qos.reliability = RMW_QOS_POLICY_RELIABILITY_RELIABLE;
  latched.qos.durability = RMW_QOS_POLICY_DURABILITY_TRANSIENT_LOCAL;
  rcl_subscription_t image_sub = rcl_get_zero_initialized_subscription();
  rcl_subscription_t odom_sub = rcl_get_zero_initialized_subscription();
  rcl_subscription_t goal_sub = rcl_get_zero_initialized_subscription();
  CHECK(rcl_subscription_init(&image_sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(sensor_msgs, msg, Image),
                              opt.image_topic.c_str(), &sensor));
  const std::string info_topic = opt.camera_info_topic.empty() ? camera_info_beside(opt.image_topic)
                                                               : opt.camera_info_topic;
  rcl_subscription_t info_sub = rcl_get_zero_initialized_subscription();
  CHECK(rcl_subscription_init(&info_sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(sensor_msgs, msg, CameraInfo),
                              info_topic.c_str(), &sensor));
  if (wts.use_goal) {
    CHECK(rcl_subscription_init(&odom_sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(nav_msgs, msg, Odometry),
                                opt.odom_topic.c_str(), &sensor));
    CHECK(rcl_subscription_init(&goal_sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(geometry_msgs, msg, PoseStamped),
                                opt.goal_topic.c_str(), &latched));
  }
  rcl_subscription_t clock_sub = rcl_get_zero_initialized_subscription();
  if (opt.use_sim_time) {
    rcl_subscription_options_t clock_options = rcl_subscription_get_default_options();
    // rclpy's and rclcpp's time sources: best effort, the newest clock only (it matches every publisher).
    clock_options.qos.depth = 1;
    clock_options.qos.reliability = RMW_QOS_POLICY_RELIABILITY_BEST_EFFORT;
    CHECK(rcl_subscription_init(&clock_sub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(rosgraph_msgs, msg, Clock), "/clock",
                                &clock_options));
  }
  rcl_publisher_options_t pub_options = rcl_publisher_get_default_options();  // reliable, keep last 10
  rcl_publisher_t pub = rcl_get_zero_initialized_publisher();
  CHECK(rcl_publisher_init(&pub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(geometry_msgs, msg, TwistStamped),
                           opt.cmd_topic.c_str(), &pub_options));
  rcl_publisher_t diag_pub = rcl_get_zero_initialized_publisher();
  CHECK(rcl_publisher_init(&diag_pub, &node, ROSIDL_GET_MSG_TYPE_SUPPORT(diagnostic_msgs, msg, DiagnosticArray),
                           "/diagnostics", &pub_options));
  rcl_service_options_t srv_options = rcl_service_get_default_options();
  rcl_service_t enable_srv = rcl_get_zero_initialized_service();
  rcl_service_t reset_srv = rcl_get_zero_initialized_service();
  CHECK(rcl_service_init(&enable_srv, &node, ROSIDL_GET_SRV_TYPE_SUPPORT(std_srvs, srv, SetBool), "~/enable",
                         &srv_options));
  CHECK(rcl_service_init(&reset_srv, &node, ROSIDL_GET_SRV_TYPE_SUPPORT(std_srvs, srv, Trigger), "~/reset_state",
                         &srv_options));
  rcl_wait_set_t wait_set = rcl_get_zero_initialized_wait_set();
  CHECK(rcl_wait_set_init(&wait_set, 5, 0, 0, 0, 2 + NodeLifecycle::kServices + NodeParameters::kServices, 0, &context,
                          allocator));

  sensor_msgs__msg__Image image{};
  sensor_msgs__msg__CameraInfo camera_info{};
  sensor_msgs__msg__CameraInfo__init(&camera_info);
  nav_msgs__msg__Odometry odom{}, odom_in{};
  geometry_msgs__msg__PoseStamped goal{}, goal_in{};
  // Zeroed before init: rosidl's C init functions leave fields without a default (every Vector3 component)
  // as they were, and angular.x/y are never assigned: uninitialised stack bytes went out on /cmd_vel.
  geometry_msgs__msg__TwistStamped cmd{};
  sensor_msgs__msg__Image__init(&image);
  nav_msgs__msg__Odometry__init(&odom);
  nav_msgs__msg__Odometry__init(&odom_in);
  geometry_msgs__msg__PoseStamped__init(&goal);
  geometry_msgs__msg__PoseStamped__init(&goal_in);
  geometry_msgs__msg__TwistStamped__init(&cmd);
  rosidl_runtime_c__String__assign(&cmd.header.frame_id, "base_link");

  uint64_t frames = 0, commands = 0, dropped = 0, resets = 0, nonfinite = 0, hovers = 0, dropped_frames = 0;
  uint64_t superseded = 0, unsynced = 0;
  // Warnings that can come with every frame, at most once per 5 s each (the Python node's throttle).
  std::map<std::string, int64_t> warned_at;
  auto warn = [&](const std::string& key, const std::string& text) {
    const int64_t now = wall_ns();
    auto it = warned_at.find(key);
    if (it != warned_at.end() && now - it->second < 5000000000LL) return;
    warned_at[key] = now;
    fprintf(stderr, "native_controller: %s\n", text.c_str());
  };
  auto publish = [&](const double c[4], const builtin_interfaces__msg__Time& stamp) {
    cmd.header.stamp = stamp;
    cmd.twist.linear.x = c[0];
    cmd.twist.linear.y = c[1];
    cmd.twist.linear.z = c[2];
    cmd.twist.angular.z = c[3];
    if (rcl_publish(&pub, &cmd, nullptr) != RCL_RET_OK) {
      fprintf(stderr, "native_controller: rcl_publish failed: %s\n", rcl_get_error_string().str);
      rcl_reset_error();
    }
    ++commands;  // every command, hovers included, as the Python node counts them
  };
  // The node's time: /clock's under --use-sim-time (0 until the first), else the system clock, as rclpy's.
  int64_t sim_now = 0;
  auto now_ns = [&]() { return opt.use_sim_time ? sim_now : system_ns(); };
  auto now_stamp = [&]() {
    builtin_interfaces__msg__Time t{};
    const int64_t ns = now_ns();
    t.sec = static_cast<int32_t>(ns / 1000000000LL);
    t.nanosec = static_cast<uint32_t>(ns % 1000000000LL);
    return t;
  };
  const double zero[4] = {0.0, 0.0, 0.0, 0.0};
  std::vector<float> h(static_cast<size_t>(S), 0.0f), h_new(static_cast<size_t>(S), 0.0f);
  std::vector<uint8_t> rgb;
  bool have_state = false, have_odom = false, have_goal = false, failsafe = false, enabled = true;
  bool active = false;  // the lifecycle's 'active': only then does a frame or the fail-safe timer command
  std::string mismatch;  // the camera check's finding ("" = the trained camera, or cannot be judged)
  int64_t last_stamp = 0, camera_at = -1, odom_at = -1;
  bool have_stamp = false;
  // Simulated time that has not started (no /clock yet): the wait for a first input starts with it.
  int64_t armed_at = opt.use_sim_time ? -1 : now_ns();
  const int64_t period_ns = static_cast<int64_t>(1e9 / opt.failsafe_rate);
  int64_t next_check = wall_ns() + period_ns;

  std::string failsafe_reason;
  // Per diagnostics period: frames stepped, their latency (take to publish) summed and at most.
  uint64_t window_frames = 0;
  double window_latency = 0.0, window_max = 0.0;
  int64_t next_diag = wall_ns() + 1000000000LL, window_start = wall_ns();
  auto publish_diagnostics = [&](int64_t now) {
    diagnostic_msgs__msg__DiagnosticArray arr{};
    diagnostic_msgs__msg__DiagnosticArray__init(&arr);
    arr.header.stamp = now_stamp();
    diagnostic_msgs__msg__DiagnosticStatus__Sequence__init(&arr.status, 1);
    diagnostic_msgs__msg__DiagnosticStatus& st = arr.status.data[0];
    rosidl_runtime_c__String__assign(&st.name, (node_name + ": lnn_nav controller").c_str());
    rosidl_runtime_c__String__assign(&st.hardware_id, "cpu");
    std::string message = "flying";
    st.level = diagnostic_msgs__msg__DiagnosticStatus__OK;
    if (!active) {
      st.level = diagnostic_msgs__msg__DiagnosticStatus__WARN;
      message = std::string(lifecycle.label()) + ": not commanding";
    } else if (!enabled) {
      st.level = diagnostic_msgs__msg__DiagnosticStatus__WARN;
      message = "e-stop: commanding zero";
    } else if (failsafe) {
      st.level = diagnostic_msgs__msg__DiagnosticStatus__ERROR;
      message = "fail-safe hover: " + failsafe_reason;
    } else if (!mismatch.empty()) {
      st.level = diagnostic_msgs__msg__DiagnosticStatus__WARN;
      message = "flying; " + mismatch;
    }
    rosidl_runtime_c__String__assign(&st.message, message.c_str());
    const double seconds = std::max(1e-9, (now - window_start) / 1e9);
    char buf[64];
    auto fmt = [&buf](double v) {
      snprintf(buf, sizeof(buf), "%.2f", v);
      return std::string(buf);
    };
    const std::vector<std::pair<std::string, std::string>> values = {
        {"state", lifecycle.label()},
        {"enabled", enabled ? "True" : "False"},
        {"frame_rate_hz", fmt(window_frames / seconds)},
        {"step_latency_mean_ms", fmt(window_frames ? window_latency / window_frames * 1e3 : 0.0)},
        {"step_latency_max_ms", fmt(window_max * 1e3)},
        {"failsafe_active", failsafe ? "True" : "False"},
        {"last_failsafe_reason", failsafe_reason},
        {"camera_mismatch", mismatch},
        {"frames", std::to_string(frames)},
        {"commands", std::to_string(commands)},
        {"malformed_inputs", std::to_string(dropped)},
        {"dropped_frames", std::to_string(dropped_frames)},
        {"state_resets", std::to_string(resets)},
        {"nonfinite_outputs", std::to_string(nonfinite)},
        {"failsafe_commands", std::to_string(hovers)},
        {"superseded_frames", std::to_string(superseded)},
        {"unsynced_frames", std::to_string(unsynced)},
    };
    diagnostic_msgs__msg__KeyValue__Sequence__init(&st.values, values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      rosidl_runtime_c__String__assign(&st.values.data[i].key, values[i].first.c_str());
      rosidl_runtime_c__String__assign(&st.values.data[i].value, values[i].second.c_str());
    }
    if (rcl_publish(&diag_pub, &arr, nullptr) != RCL_RET_OK) rcl_reset_error();
    diagnostic_msgs__msg__DiagnosticArray__fini(&arr);
    window_frames = 0;
    window_latency = window_max = 0.0;
    window_start = now;
  };
  fprintf(stderr, "native_controller: %s (%dx%d%s), camera %s -> %s\n", opt.weights.c_str(), W, H,
          wts.use_goal ? ", goal policy" : "", opt.image_topic.c_str(), opt.cmd_topic.c_str());

  // Names of the stale inputs at `now` ("" when none), as the Python node's InputWatchdog.
  auto stale = [&](int64_t now) {
    std::string out;
    if (armed_at < 0) armed_at = now;  // the wait for a first input starts at the first check (InputWatchdog)
    auto check = [&](const char* name, int64_t at, double timeout) {
      const double waited = (now - (at < 0 ? armed_at : at)) / 1e9;
      if (waited > timeout) out += out.empty() ? name : std::string(", ") + name;
    };
    check("camera", camera_at, opt.image_timeout);
    if (wts.use_goal) {
      check("odom", odom_at, opt.odom_timeout);
      if (!have_goal) out += out.empty() ? "goal" : ", goal";
    }
    return out;
  };

  // Whether a frame stamped `frame` has its inputs (sync_inputs): the goal, and odometry stamped at or after it.
  auto inputs_reach = [&](int64_t frame) {
    if (!wts.use_goal) return true;
    return have_goal && have_odom && stamp_ns(odom.header.stamp) >= frame;
  };
  bool pending = false;
  std::vector<uint8_t> pending_rgb;
  builtin_interfaces__msg__Time pending_stamp{};
  int64_t pending_at = 0;
  // One frame through the Δt tracker, the fail-safes, the policy and the clamp: one command.
  auto run_frame = [&](const std::vector<uint8_t>& rgb, const builtin_interfaces__msg__Time stamp, int64_t taken_at) {
    // Δt (DtTracker): the first frame, a stamp going back, a gap over max_dt: nominal Δt; the last two reset.
    double dt = 1.0 / opt.expected_rate;
    const int64_t sn = stamp_ns(stamp);
    if (have_stamp) {
      const double delta = (sn - last_stamp) / 1e9;
      if (delta < 0 || delta > opt.max_dt) {
        have_state = false;
        ++resets;
        fprintf(stderr, "native_controller: resetting the recurrent state: %s\n",
                delta < 0 ? "frame stamp went back" : "gap between frames exceeds max_dt");
      } else {
        dt = delta;
      }
    }
    have_stamp = true;
    last_stamp = sn;
    const std::string missing = stale(now_ns());
    if (!enabled || !missing.empty()) {  // e-stop or a missing input: hover, the network not advanced
      dropped_frames += missing.empty() ? 0 : 1;
      publish(zero, stamp);
      return;
    }
    float g[4];
    if (wts.use_goal) {
      // As the Python node's _extra_inputs: no odometry or goal yet, another frame, or a zero orientation is
      // a dropped frame answered with a hover (the network not advanced, the state kept).
      std::string why;
      if (!have_odom || !have_goal) {
        why = std::string("no ") + (!have_odom ? "odometry" : "goal") + " received yet";
      } else if (strcmp(odom.header.frame_id.data, goal.header.frame_id.data) != 0) {
        why = std::string("goal is in frame '") + goal.header.frame_id.data + "' but odometry is in '" +
              odom.header.frame_id.data + "'; publish the goal in the odometry frame";
      } else if (!goal_input(odom, goal, g)) {
        why = "quaternion with zero norm in the odometry";
      }
      if (!why.empty()) {
        ++dropped_frames;
        warn(why.substr(0, 10), "dropped a frame: " + why);
        publish(zero, stamp);
        return;
      }
    }
    float command[4];
    const int32_t rc = lnn_rt_step(rt.get(), rgb.data(), H, W, static_cast<int64_t>(W) * 3, nullptr,
                                   wts.use_goal ? g : nullptr, have_state ? h.data() : nullptr,
                                   static_cast<float>(dt), h_new.data(), command);
    double c[4] = {command[0], command[1], command[2], command[3]};
    const bool finite = rc == 0 && std::isfinite(c[0]) && std::isfinite(c[1]) && std::isfinite(c[2]) &&
                        std::isfinite(c[3]);
    if (!finite) {
      ++nonfinite;
      ++resets;
      have_state = false;
      fprintf(stderr, "native_controller: policy output is not finite%s%s; commanding zero and resetting\n",
              rc != 0 ? ": " : "", rc != 0 ? lnn_rt_last_error() : "");
      publish(zero, stamp);
    } else {
      h.swap(h_new);
      have_state = true;
      clamp_command(c, opt);
      publish(c, stamp);
    }
    const double latency = (wall_ns() - taken_at) / 1e9;
    ++window_frames;
    window_latency += latency;
    window_max = std::max(window_max, latency);
  };

  // The node's part of each lifecycle transition, as the Python node's on_configure ... on_error. The weights
  // were loaded (and refused if unusable) at start, so configure has nothing left that can fail.
  auto final_zero = [&]() {  // waited on briefly so it is delivered before anything else happens
    publish(zero, now_stamp());
    if (rcl_publisher_wait_for_all_acked(&pub, RCL_MS_TO_NS(250)) != RCL_RET_OK) rcl_reset_error();
  };
  auto on_transition = [&](uint8_t intermediate) -> uint8_t {
    switch (intermediate) {
      case lifecycle_msgs__msg__State__TRANSITION_STATE_ACTIVATING:
        // From rest, every input waited for from now (InputWatchdog.arm; 0 = a simulated clock not started).
        have_state = have_stamp = failsafe = pending = false;
        camera_at = odom_at = -1;
        armed_at = now_ns() > 0 ? now_ns() : -1;
        next_check = wall_ns() + period_ns;
        active = true;
        fprintf(stderr, "native_controller: active: publishing commands on %s\n", opt.cmd_topic.c_str());
        break;
      case lifecycle_msgs__msg__State__TRANSITION_STATE_DEACTIVATING:
        active = pending = false;
        final_zero();
        fprintf(stderr, "native_controller: inactive: published one zero command, commanding stopped\n");
        break;
      case lifecycle_msgs__msg__State__TRANSITION_STATE_SHUTTINGDOWN:
        if (active) final_zero();
        active = false;
        break;
      case lifecycle_msgs__msg__State__TRANSITION_STATE_ERRORPROCESSING:
        active = false;
        break;
      default:  // configuring, cleaning up: the state starts from rest at the next activation
        have_state = have_stamp = false;
    }
    return lifecycle_msgs__msg__Transition__TRANSITION_CALLBACK_SUCCESS;
  };
  int exit_code = 0, wait_failures = 0;
  if (opt.autostart) {
    // As the Python node's main: an autostart that does not reach 'active' is an exit 1, not an idle node.
    if (!lifecycle.change(lifecycle_msgs__msg__Transition__TRANSITION_CONFIGURE, on_transition) ||
        !lifecycle.change(lifecycle_msgs__msg__Transition__TRANSITION_ACTIVATE, on_transition)) {
      fprintf(stderr, "native_controller: autostart failed: the node did not reach 'active'; exiting\n");
      exit_code = 1;
    }
  } else {
    fprintf(stderr, "native_controller: autostart off: waiting in 'unconfigured' for a lifecycle manager\n");
  }
  // A wait set that cannot be filled ends the loop (exit 1) through the final zero below, not around it.
  auto filled = [&](rcl_ret_t rc, const char* what) {
    if (rc == RCL_RET_OK) return true;
    fprintf(stderr, "native_controller: %s failed: %s\n", what, rcl_get_error_string().str);
    rcl_reset_error();
    exit_code = 1;
    return false;
  };
  while (g_running && exit_code == 0) {
    bool ok = filled(rcl_wait_set_clear(&wait_set), "rcl_wait_set_clear") &&
              filled(rcl_wait_set_add_subscription(&wait_set, &image_sub, nullptr), "adding the camera");
    if (ok && wts.use_goal) {
      ok = filled(rcl_wait_set_add_subscription(&wait_set, &odom_sub, nullptr), "adding the odometry") &&
           filled(rcl_wait_set_add_subscription(&wait_set, &goal_sub, nullptr), "adding the goal");
    }
    if (ok && opt.use_sim_time) ok = filled(rcl_wait_set_add_subscription(&wait_set, &clock_sub, nullptr), "adding /clock");
    ok = ok && filled(rcl_wait_set_add_subscription(&wait_set, &info_sub, nullptr), "adding the camera info") &&
         filled(rcl_wait_set_add_service(&wait_set, &enable_srv, nullptr), "adding ~/enable") &&
         filled(rcl_wait_set_add_service(&wait_set, &reset_srv, nullptr), "adding ~/reset_state") &&
         filled(lifecycle.add_to(&wait_set), "adding the lifecycle services") &&
         filled(parameters.add_to(&wait_set), "adding the parameter services");
    if (!ok) break;
    // Inactive: the fail-safe timer and a held frame do not run, so they must not shorten the wait either.
    int64_t until = active ? std::min(next_check, next_diag) : next_diag;
    if (pending && active) until = std::min(until, pending_at + static_cast<int64_t>(opt.sync_timeout * 1e9));
    // At most 100 ms: a signal does not interrupt rcl_wait, the stop flag is read between waits.
    const int64_t wait_ns = std::min<int64_t>(std::max<int64_t>(0, until - wall_ns()), RCL_MS_TO_NS(100));
    rcl_ret_t waited = rcl_wait(&wait_set, wait_ns);
    if (waited != RCL_RET_OK && waited != RCL_RET_TIMEOUT) {
      if (!g_running) break;
      fprintf(stderr, "native_controller: rcl_wait failed: %s\n", rcl_get_error_string().str);
      rcl_reset_error();
      if (++wait_failures >= 10) {  // not a passing hiccup: stop (through the final zero), do not spin
        exit_code = 1;
        break;
      }
      continue;
    }
    wait_failures = 0;
    lifecycle.serve(on_transition);
    parameters.serve([&](const std::string&) {
      std::string why;
      validate_options(opt, why);
      return why;
    });
    rmw_request_id_t request_id;
    std_srvs__srv__SetBool_Request enable_req{};
    std_srvs__srv__SetBool_Request__init(&enable_req);
    while (rcl_take_request(&enable_srv, &request_id, &enable_req) == RCL_RET_OK) {
      if (enable_req.data && !enabled) {  // the network sat idle during the stop: restart it from rest
        have_state = false;
        have_stamp = false;
        fprintf(stderr, "native_controller: enabled: commanding resumes\n");
      } else if (!enable_req.data && enabled) {
        fprintf(stderr, "native_controller: e-stop: commanding zero until re-enabled\n");
        if (active) publish(zero, now_stamp());  // inactive: /cmd_vel belongs to whoever commands the vehicle
      }
      enabled = enable_req.data;
      std_srvs__srv__SetBool_Response resp{};
      std_srvs__srv__SetBool_Response__init(&resp);
      resp.success = true;
      rosidl_runtime_c__String__assign(&resp.message, enabled ? "enabled" : "e-stop: zero commands");
      if (rcl_send_response(&enable_srv, &request_id, &resp) != RCL_RET_OK) rcl_reset_error();
      std_srvs__srv__SetBool_Response__fini(&resp);
    }
    std_srvs__srv__SetBool_Request__fini(&enable_req);
    std_srvs__srv__Trigger_Request reset_req{};
    std_srvs__srv__Trigger_Request__init(&reset_req);
    while (rcl_take_request(&reset_srv, &request_id, &reset_req) == RCL_RET_OK) {
      have_state = false;
      have_stamp = false;
      std_srvs__srv__Trigger_Response resp{};
      std_srvs__srv__Trigger_Response__init(&resp);
      resp.success = true;
      rosidl_runtime_c__String__assign(&resp.message, "recurrent state reset");
      if (rcl_send_response(&reset_srv, &request_id, &resp) != RCL_RET_OK) rcl_reset_error();
      std_srvs__srv__Trigger_Response__fini(&resp);
    }
    std_srvs__srv__Trigger_Request__fini(&reset_req);
    rmw_message_info_t info;
    while (rcl_take(&info_sub, &camera_info, &info, nullptr) == RCL_RET_OK) {
      const std::string problem = camera_mismatch(wts.camera_hfov, camera_info.k[0], camera_info.width);
      if (!problem.empty() && problem != mismatch)
        fprintf(stderr, "native_controller: %s: the policy's commands are not to be trusted with this camera\n",
                problem.c_str());
      else if (!problem.empty())
        warn("camera", problem);
      mismatch = problem;
    }
    if (opt.use_sim_time) {
      rosgraph_msgs__msg__Clock clock{};
      rosgraph_msgs__msg__Clock__init(&clock);
      while (rcl_take(&clock_sub, &clock, &info, nullptr) == RCL_RET_OK) sim_now = stamp_ns(clock.clock);
      rosgraph_msgs__msg__Clock__fini(&clock);
    }
    if (wts.use_goal) {
      while (rcl_take(&goal_sub, &goal_in, &info, nullptr) == RCL_RET_OK) {
        geometry_msgs__msg__PoseStamped__copy(&goal_in, &goal);
        have_goal = true;
        fprintf(stderr, "native_controller: new goal (%.2f, %.2f, %.2f) in '%s'\n", goal.pose.position.x,
                goal.pose.position.y, goal.pose.position.z, goal.header.frame_id.data);
      }
      while (rcl_take(&odom_sub, &odom_in, &info, nullptr) == RCL_RET_OK) {
        nav_msgs__msg__Odometry__copy(&odom_in, &odom);
        have_odom = true;
        odom_at = now_ns();
      }
    }
    while (rcl_take(&image_sub, &image, &info, nullptr) == RCL_RET_OK) {
      if (!active) continue;  // not commanding: frames are not flown (the Python node's early return)
      std::string why;
      if (!frame_to_rgb(image, H, W, rgb, why)) {
        ++dropped;
        warn(why.substr(0, 16), "dropped a camera frame: " + why);
        continue;
      }
      ++frames;
      camera_at = now_ns();
      const int64_t taken = wall_ns();
      if (opt.sync_inputs && !inputs_reach(stamp_ns(image.header.stamp))) {
        if (pending) ++superseded;  // only the newest frame matters: the older never got its inputs in time
        pending = true;
        pending_rgb.swap(rgb);
        pending_stamp = image.header.stamp;
        pending_at = taken;
        continue;
      }
      pending = false;
      run_frame(rgb, image.header.stamp, taken);
    }
    if (pending && active) {
      const bool timed_out = wall_ns() - pending_at >= static_cast<int64_t>(opt.sync_timeout * 1e9);
      if (timed_out || inputs_reach(stamp_ns(pending_stamp))) {
        pending = false;
        if (timed_out) {
          ++unsynced;
          fprintf(stderr, "native_controller: no odometry stamped with the frame within sync_timeout=%g s; "
                  "running it with the latest inputs\n", opt.sync_timeout);
        }
        run_frame(pending_rgb, pending_stamp, pending_at);
      }
    }
    const int64_t wall = wall_ns();
    if (active && wall >= next_check) {  // the fail-safe timer
      next_check = wall + period_ns;
      const std::string missing = stale(now_ns());
      if (!missing.empty()) {
        if (!failsafe) fprintf(stderr, "native_controller: fail-safe: hovering (zero command): %s\n", missing.c_str());
        failsafe = true;
        failsafe_reason = missing;
        if (missing.find("camera") != std::string::npos) {
          publish(zero, now_stamp());
          ++hovers;
        }
      } else if (failsafe) {
        failsafe = false;
        fprintf(stderr, "native_controller: fail-safe cleared: inputs are fresh again, resuming\n");
      }
    }
    if (wall >= next_diag) {
      next_diag = wall + 1000000000LL;
      publish_diagnostics(wall);
    }
  }
  if (active) final_zero();  // an inactive node leaves the vehicle to whoever commands it
  fprintf(stderr,
          "native_controller: stopped; frames %llu, commands %llu, dropped frames %llu, state resets %llu, "
          "non-finite outputs %llu, fail-safe hovers %llu\n",
          (unsigned long long)frames, (unsigned long long)commands, (unsigned long long)dropped,
          (unsigned long long)resets, (unsigned long long)nonfinite, (unsigned long long)hovers);
  sensor_msgs__msg__Image__fini(&image);
  sensor_msgs__msg__CameraInfo__fini(&camera_info);
  nav_msgs__msg__Odometry__fini(&odom);
  nav_msgs__msg__Odometry__fini(&odom_in);
  geometry_msgs__msg__PoseStamped__fini(&goal);
  geometry_msgs__msg__PoseStamped__fini(&goal_in);
  geometry_msgs__msg__TwistStamped__fini(&cmd);
  // In order: the wait set, publisher and subscriptions before their node, shutdown before the context.
  // Teardown errors change nothing at exit; each is still reported.
  auto report = [](rcl_ret_t rc, const char* what) {
    if (rc != RCL_RET_OK) fprintf(stderr, "native_controller: %s failed\n", what);
  };
  report(rcl_wait_set_fini(&wait_set), "rcl_wait_set_fini");
  lifecycle.fini();
  parameters.fini();
  report(rcl_service_fini(&enable_srv, &node), "rcl_service_fini");
  report(rcl_service_fini(&reset_srv, &node), "rcl_service_fini");
  report(rcl_publisher_fini(&pub, &node), "rcl_publisher_fini");
  report(rcl_publisher_fini(&diag_pub, &node), "rcl_publisher_fini");
  report(rcl_subscription_fini(&image_sub, &node), "rcl_subscription_fini");
  report(rcl_subscription_fini(&info_sub, &node), "rcl_subscription_fini");
  if (opt.use_sim_time) report(rcl_subscription_fini(&clock_sub, &node), "rcl_subscription_fini");
  if (wts.use_goal) {
    report(rcl_subscription_fini(&odom_sub, &node), "rcl_subscription_fini");
    report(rcl_subscription_fini(&goal_sub, &node), "rcl_subscription_fini");
  }
  report(rcl_node_fini(&node), "rcl_node_fini");
  report(rcl_shutdown(&context), "rcl_shutdown");
  report(rcl_context_fini(&context), "rcl_context_fini");
  report(rcl_init_options_fini(&init_options), "rcl_init_options_fini");
  return exit_code;
}

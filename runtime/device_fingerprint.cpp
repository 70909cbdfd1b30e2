// The running device's fingerprint: what makes a tuning record valid here.
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/config_selector.hpp"
#include "samoyeds/device.hpp"

namespace samoyeds {

DeviceFingerprint current_fingerprint(int device) {
  const DeviceInfo& info = Device::get(device).info();
  DeviceFingerprint f;
  f.gpu_name = info.name;
  f.cc_major = info.cc_major;
  f.cc_minor = info.cc_minor;
  f.sm_count = info.sm_count;
  f.driver_version = info.driver_version;
  f.nvrtc_version = nvrtc_version();
  f.library_version = library_version();
  return f;
}

}  // namespace samoyeds

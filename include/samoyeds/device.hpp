// The GPU side: a device's primary context (shared with the CUDA runtime and
// PyTorch in the same process) and owning device buffers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace samoyeds {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int driver_version = 0;  // e.g. 13000
  int max_smem_optin = 0;  // bytes per block
  // Target our kernels are compiled for: sm_90a on Hopper (wgmma needs the
  // 'a' target, and sm_90a code runs only on 9.0 devices), else sm_XY.
  // Filled once when the device is opened (the launch path reads it).
  std::string arch_name;
  const std::string& arch() const { return arch_name; }
};

// True when a CUDA driver and a device exist; `why_not` says otherwise.
bool gpu_available(std::string* why_not = nullptr);

class Device {
 public:
  // The primary context of device `ordinal`, retained once per process.
  static Device& get(int ordinal = 0);
  const DeviceInfo& info() const { return info_; }
  // Binds the primary context to the calling thread (cheap if already bound).
  void make_current() const;
  void synchronize() const;
  void* raw_context() const { return ctx_; }

 private:
  explicit Device(int ordinal);
  DeviceInfo info_;
  void* ctx_ = nullptr;
};

// Synchronous copies between host memory and device pointers.
void copy_to_host(void* host, const void* device, size_t bytes);
void copy_to_device(void* device, const void* host, size_t bytes);

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return reinterpret_cast<void*>(ptr_); }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;
  void fill_bytes(uint8_t value);

 private:
  uint64_t ptr_ = 0;
  size_t bytes_ = 0;
};

}  // namespace samoyeds

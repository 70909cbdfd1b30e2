#include "samoyeds/device.hpp"

#include <map>
#include <memory>
#include <mutex>

#include <fmt/format.h>

#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

namespace {
// Memory calls need a current context; a thread that never touched a Device
// gets device 0's primary context (what the CUDA runtime would do).
void ensure_context() {
  CUcontext cur = nullptr;
  check(driver().cuCtxGetCurrent(&cur), "cuCtxGetCurrent");
  if (!cur) Device::get(0);
}
}  // namespace

Device::Device(int ordinal) {
  const DriverApi& d = driver();
  int count = 0;
  check(d.cuDeviceGetCount(&count), "cuDeviceGetCount");
  if (ordinal < 0 || ordinal >= count)
    throw Error(ErrorCode::InvalidArgument, fmt::format("device {} does not exist ({} visible)", ordinal, count));
  CUdevice dev;
  check(d.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
  char name[256] = {};
  check(d.cuDeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
  info_.ordinal = ordinal;
  info_.name = name;
  check(d.cuDeviceGetAttribute(&info_.cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "attribute");
  check(d.cuDeviceGetAttribute(&info_.cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "attribute");
  check(d.cuDeviceGetAttribute(&info_.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev), "attribute");
  check(d.cuDeviceGetAttribute(&info_.max_smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev),
        "attribute");
  check(d.cuDriverGetVersion(&info_.driver_version), "cuDriverGetVersion");
  info_.arch_name = fmt::format("sm_{}{}{}", info_.cc_major, info_.cc_minor,
                                info_.cc_major == 9 && info_.cc_minor == 0 ? "a" : "");
  CUcontext ctx;
  check(d.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
  ctx_ = ctx;
}

Device& Device::get(int ordinal) {
  static std::mutex mu;
  static std::map<int, std::unique_ptr<Device>> devices;  // retained for the process's life
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = devices[ordinal];
  if (!slot) slot.reset(new Device(ordinal));
  slot->make_current();
  return *slot;
}

void Device::make_current() const {
  const DriverApi& d = driver();
  CUcontext cur = nullptr;
  check(d.cuCtxGetCurrent(&cur), "cuCtxGetCurrent");
  if (cur != static_cast<CUcontext>(ctx_)) check(d.cuCtxSetCurrent(static_cast<CUcontext>(ctx_)), "cuCtxSetCurrent");
}

void Device::synchronize() const {
  make_current();
  check(driver().cuCtxSynchronize(), "cuCtxSynchronize");
}

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  if (bytes == 0) return;
  ensure_context();
  CUdeviceptr p = 0;
  check(driver().cuMemAlloc(&p, bytes), fmt::format("cuMemAlloc({} bytes)", bytes).c_str());
  ptr_ = p;
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) driver().cuMemFree(CUdeviceptr(ptr_));
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = 0;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) driver().cuMemFree(CUdeviceptr(ptr_));
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = 0;
    o.bytes_ = 0;
  }
  return *this;
}
void copy_to_host(void* host, const void* device, size_t bytes) {
  ensure_context();
  if (bytes) check(driver().cuMemcpyDtoH(host, CUdeviceptr(device), bytes), "cuMemcpyDtoH");
}
void copy_to_device(void* device, const void* host, size_t bytes) {
  ensure_context();
  if (bytes) check(driver().cuMemcpyHtoD(CUdeviceptr(device), host, bytes), "cuMemcpyHtoD");
}
void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  if (offset + bytes > bytes_) throw Error(ErrorCode::InvalidArgument, "DeviceBuffer::upload out of range");
  copy_to_device(reinterpret_cast<void*>(ptr_ + offset), host, bytes);
}
void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  if (offset + bytes > bytes_) throw Error(ErrorCode::InvalidArgument, "DeviceBuffer::download out of range");
  copy_to_host(host, reinterpret_cast<const void*>(ptr_ + offset), bytes);
}
void DeviceBuffer::fill_bytes(uint8_t value) {
  ensure_context();
  if (bytes_) check(driver().cuMemsetD8(CUdeviceptr(ptr_), value, bytes_), "cuMemsetD8");
}

}  // namespace samoyeds

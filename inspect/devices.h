// Devices people run small models on, as data: memory and peak memory bandwidth from public
// spec sheets (see devices.cpp for the source of each row), and how much of the memory a
// model can realistically use on each class of device.
#pragma once
#include <span>
#include <string_view>

namespace smolq {

enum class DeviceClass { kDiscreteGpu, kDatacenterGpu, kAppleSilicon, kPhone, kSbc, kPc };
std::string_view device_class_name(DeviceClass c);

// Share of a device's memory a model may occupy. Assumptions, stated once:
// - discrete GPUs keep ~8% for the driver, CUDA/Vulkan context and display;
// - Apple silicon: macOS lets the GPU wire about 2/3 to 3/4 of unified memory by default;
// - phones: the OS and other apps keep about half of RAM;
// - single-board computers run little else; PCs keep a quarter for the OS and desktop.
double usable_memory_fraction(DeviceClass c);

struct Device {
  std::string_view name;
  DeviceClass cls;
  double memory_gb;      // decimal gigabytes (10^9 bytes), as spec sheets state them
  double bandwidth_gbs;  // peak memory bandwidth, GB/s (10^9 bytes per second)
  std::string_view source;  // kind of source the numbers come from

  double usable_bytes() const { return memory_gb * 1e9 * usable_memory_fraction(cls); }
};

std::span<const Device> all_devices();
// Case-insensitive; exact name first, then a unique substring match. nullptr when none or ambiguous.
const Device* find_device(std::string_view name);

}  // namespace smolq

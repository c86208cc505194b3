// The device table. Memory is the configuration named; bandwidth is the vendor's peak figure
// (bus width x transfer rate where the vendor states only the memory type). Spec-sheet
// numbers, not measurements: the decode-speed estimate applies its efficiency factor on top.
#include "inspect/devices.h"

#include <array>
#include <cctype>
#include <string>

namespace smolq {
namespace {

using C = DeviceClass;

constexpr std::array<Device, 30> kDevices{{
    // NVIDIA GeForce: product pages / spec tables (memory size, memory bandwidth).
    {"RTX 5090", C::kDiscreteGpu, 32, 1792, "vendor spec sheet"},
    {"RTX 4090", C::kDiscreteGpu, 24, 1008, "vendor spec sheet"},
    {"RTX 4080", C::kDiscreteGpu, 16, 716.8, "vendor spec sheet"},
    {"RTX 4070", C::kDiscreteGpu, 12, 504, "vendor spec sheet"},
    {"RTX 4060", C::kDiscreteGpu, 8, 272, "vendor spec sheet"},
    {"RTX 3090", C::kDiscreteGpu, 24, 936, "vendor spec sheet"},
    {"RTX 3060 12GB", C::kDiscreteGpu, 12, 360, "vendor spec sheet"},
    // AMD Radeon: product page.
    {"RX 7900 XTX", C::kDiscreteGpu, 24, 960, "vendor spec sheet"},
    // NVIDIA data-centre parts: datasheets.
    {"A100 80GB SXM", C::kDatacenterGpu, 80, 2039, "vendor datasheet"},
    {"H100 SXM", C::kDatacenterGpu, 80, 3350, "vendor datasheet"},
    {"L4", C::kDatacenterGpu, 24, 300, "vendor datasheet"},
    {"T4", C::kDatacenterGpu, 16, 320, "vendor datasheet"},
    // Apple silicon: unified memory bandwidth from Apple's tech specs / launch notes.
    {"M1 8GB", C::kAppleSilicon, 8, 68.25, "vendor tech specs (LPDDR4X-4266, 128-bit)"},
    {"M1 16GB", C::kAppleSilicon, 16, 68.25, "vendor tech specs (LPDDR4X-4266, 128-bit)"},
    {"M2 8GB", C::kAppleSilicon, 8, 100, "vendor tech specs"},
    {"M2 Pro 16GB", C::kAppleSilicon, 16, 200, "vendor tech specs"},
    {"M3 Max 48GB", C::kAppleSilicon, 48, 400, "vendor tech specs (16-core CPU variant)"},
    {"M4 16GB", C::kAppleSilicon, 16, 120, "vendor tech specs"},
    {"M4 Pro 24GB", C::kAppleSilicon, 24, 273, "vendor tech specs"},
    {"M2 Ultra 192GB", C::kAppleSilicon, 192, 800, "vendor tech specs"},
    // Phones: RAM from the vendor; bandwidth = LPDDR bus width x rate of the SoC's memory.
    {"iPhone 15 Pro", C::kPhone, 8, 51.2, "vendor RAM; LPDDR5-6400 x 64-bit"},
    {"Pixel 8", C::kPhone, 8, 51.2, "vendor RAM; LPDDR5-6400 x 64-bit"},
    {"Galaxy S24 Ultra", C::kPhone, 12, 76.8, "vendor RAM; Snapdragon 8 Gen 3 LPDDR5X-9600 x 64-bit"},
    {"Snapdragon 8 Gen 2 phone", C::kPhone, 8, 67.0, "SoC spec: LPDDR5X-8533 x 64-bit"},
    // Single-board computers and embedded modules.
    {"Raspberry Pi 5 8GB", C::kSbc, 8, 17.1, "vendor spec: LPDDR4X-4267 x 32-bit"},
    {"Raspberry Pi 4 4GB", C::kSbc, 4, 12.8, "vendor spec: LPDDR4-3200 x 32-bit"},
    {"Jetson Orin Nano 8GB", C::kSbc, 8, 68, "vendor datasheet"},
    {"Jetson AGX Orin 64GB", C::kSbc, 64, 204.8, "vendor datasheet"},
    // Desktop CPUs: channels x 64-bit x transfer rate.
    {"PC DDR5-5600 dual-channel 32GB", C::kPc, 32, 89.6, "JEDEC rate x 2 x 64-bit"},
    {"PC DDR4-3200 dual-channel 16GB", C::kPc, 16, 51.2, "JEDEC rate x 2 x 64-bit"},
}};

std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

}  // namespace

std::string_view device_class_name(DeviceClass c) {
  switch (c) {
    case C::kDiscreteGpu: return "GPU";
    case C::kDatacenterGpu: return "datacenter GPU";
    case C::kAppleSilicon: return "Apple silicon";
    case C::kPhone: return "phone";
    case C::kSbc: return "SBC";
    case C::kPc: return "PC (CPU)";
  }
  return "?";
}

double usable_memory_fraction(DeviceClass c) {
  switch (c) {
    case C::kDiscreteGpu: case C::kDatacenterGpu: return 0.92;
    case C::kAppleSilicon: return 0.70;
    case C::kPhone: return 0.50;
    case C::kSbc: return 0.80;
    case C::kPc: return 0.75;
  }
  return 0.5;
}

std::span<const Device> all_devices() { return kDevices; }

const Device* find_device(std::string_view name) {
  const std::string want = lower(name);
  for (const auto& d : kDevices)
    if (lower(d.name) == want) return &d;
  const Device* found = nullptr;
  for (const auto& d : kDevices) {
    if (lower(d.name).find(want) == std::string::npos) continue;
    if (found) return nullptr;  // ambiguous
    found = &d;
  }
  return found;
}

}  // namespace smolq

// The backends as callers see them: a config's text name
// ("bm128_bn128_bk128_w8x1_s4_p_g16_xt") read with its backend's schedule
// names, e.g. for LaunchOptions::config. Throws Error(InvalidArgument) for a
// name the backend does not have.
#pragma once
#include <string>

#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

TileConfig parse_config(const std::string& text, Backend backend);

}  // namespace samoyeds

// A file compiled into the library (device templates, model presets).
#pragma once

namespace samoyeds::detail {
struct EmbeddedFile {
  const char* name;
  const char* text;
};
extern const EmbeddedFile kEmbeddedTemplates[];     // names "samoyeds/<file>.cuh"
extern const EmbeddedFile kEmbeddedModelPresets[];  // names "<model>.yaml"
}  // namespace samoyeds::detail

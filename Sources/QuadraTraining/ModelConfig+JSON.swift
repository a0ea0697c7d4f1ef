import Foundation
import QuadraIO
import QuadraModels

extension ModelConfig {
  /// Reads a config from JSON text (a `--config` file or a checkpoint's `config` metadata) strictly:
  /// at most 1 MiB and 16 levels deep, no duplicate keys, every field decoded with its JSON path in
  /// errors (``QuadraIO/JSONInputError``), then ``validate()`` (``ModelConfigError``).
  public static func decodeJSON(_ data: Data) throws -> ModelConfig {
    let config = try StrictJSON.decode(ModelConfig.self, from: data, limits: .config)
    try config.validate()
    return config
  }
}

import Foundation
import QuadraData
import QuadraIO
import QuadraModels

/// Why a checkpoint could not be read, or does not fit the model it is loaded into.
public enum CheckpointError: Error, CustomStringConvertible, LocalizedError {
  /// A weight shape that differs from the model's (both in PyTorch layout).
  public struct ShapeMismatch: Sendable, Equatable {
    public var name: String
    public var expected: [Int]
    public var found: [Int]
  }

  /// The file's tensors are not the model's state dict: keys missing, unexpected, or of the wrong shape.
  case stateDictMismatch(path: String, missing: [String], unexpected: [String], wrongShapes: [ShapeMismatch])
  /// The checkpoint was saved from a different model configuration than the one requested.
  case configMismatch(path: String, saved: String, requested: String, differences: [String])
  /// The weights carry no model config (e.g. a PyTorch state dict) and no model was named.
  case missingConfig(path: String)
  /// The file is missing or not a valid safetensors file.
  case unreadable(path: String, reason: String)
  /// A metadata entry is missing or malformed.
  case invalidMetadata(path: String, key: String, reason: String)
  /// `--resume` points at weights without a training-state file next to them.
  case missingTrainingState(path: String)
  /// The weights and the training state come from different saves (e.g. a crash between the two writes).
  case inconsistentFiles(weights: String, state: String, reason: String)
  /// The resumed run's data or options differ from the saved run's.
  case resumeMismatch(path: String, reason: String)

  /// How many names of each kind a message lists before summarizing the rest.
  static let listedNames = 5

  public var description: String {
    switch self {
    case .stateDictMismatch(let path, let missing, let unexpected, let wrongShapes):
      var parts: [String] = []
      func list(_ names: [String]) -> String {
        let shown = names.prefix(Self.listedNames).joined(separator: ", ")
        return names.count > Self.listedNames ? "\(shown), … (\(names.count) in all)" : shown
      }
      if !missing.isEmpty { parts.append("missing keys: \(list(missing))") }
      if !unexpected.isEmpty { parts.append("unexpected keys: \(list(unexpected))") }
      if !wrongShapes.isEmpty {
        let shown = wrongShapes.prefix(Self.listedNames).map {
          "\($0.name) (expected \($0.expected), found \($0.found))"
        }
        let more = wrongShapes.count > Self.listedNames ? ", … (\(wrongShapes.count) in all)" : ""
        parts.append("wrong shapes (PyTorch layout): \(shown.joined(separator: ", "))\(more)")
      }
      return "\(path): the weights do not fit the model: \(parts.joined(separator: "; "))"
    case .configMismatch(let path, let saved, let requested, let differences):
      return "\(path): saved for model '\(saved)', which differs from the requested '\(requested)': "
        + differences.joined(separator: "; ")
    case .missingConfig(let path):
      return "\(path): the file has no model config in its metadata (a plain PyTorch state dict?); name the model with --model"
    case .unreadable(let path, let reason):
      return "\(path): \(reason)"
    case .invalidMetadata(let path, let key, let reason):
      return "\(path): metadata '\(key)': \(reason)"
    case .missingTrainingState(let path):
      return "\(path): no training state to resume from (\(CheckpointFiles.trainingState) is missing next to the weights)"
    case .inconsistentFiles(let weights, let state, let reason):
      return "\(weights) and \(state) do not belong to the same save: \(reason)"
    case .resumeMismatch(let path, let reason):
      return "cannot resume from \(path): \(reason)"
    }
  }

  public var errorDescription: String? { description }
}

/// File names inside a run directory.
public enum CheckpointFiles {
  /// The weights, PyTorch names and layouts only (`load_state_dict(strict=True)` works on them).
  public static let weights = "model.safetensors"
  /// The exponential moving average of the weights, same format (written when EMA is on).
  public static let emaWeights = "model_ema.safetensors"
  /// Optimizer moments, EMA shadow and the JSON training state, for `--resume`.
  public static let trainingState = "training_state.safetensors"

  /// Metadata keys of the weights file.
  public enum Key {
    public static let format = "format"
    public static let model = "model"
    public static let config = "config"
    public static let dataset = "dataset"
    public static let normalization = "normalization"
    /// The class names in label order, as a JSON array of strings.
    public static let classNames = "class_names"
    /// The data options evaluation repeats (``DataOptions`` as JSON).
    public static let dataOptions = "data_options"
    public static let epoch = "epoch"
    public static let globalStep = "global_step"
    public static let trainingState = "training_state"
  }

  /// The weights file a user-given path means: the path itself, or `model.safetensors` inside a directory.
  public static func weightsURL(for path: URL) -> URL {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path.path, isDirectory: &isDirectory), isDirectory.boolValue {
      return path.appendingPathComponent(weights)
    }
    return path
  }
}

/// Model weights in PyTorch form: the official `state_dict` keys, NCHW layouts, F32,
/// with the model config and run position in the safetensors metadata.
///
/// The file is exactly what `safetensors.torch.save_file(model.state_dict(), path, metadata)` would
/// write for the official PyTorch definition, so `model.load_state_dict(load_file(path), strict=True)`
/// accepts it, and a state dict saved that way loads here (metadata optional; then the model must
/// be named).
public struct WeightsCheckpoint {
  /// Tensors by PyTorch name, in PyTorch layout.
  public var tensors: [String: Tensor]
  /// The config the weights were saved from, if the metadata has one.
  public var config: ModelConfig?
  /// The dataset name (as `DatasetName.description`) the model was trained on, if recorded.
  public var dataset: String?
  /// The input normalization the model was trained with, if recorded.
  public var normalization: Normalization?
  /// The training data's class names in label order (`classCount` of them), if recorded.
  public var classNames: [String]?
  /// The data options of the training run (resolution, test fraction, layout, augmentation), if recorded.
  public var dataOptions: DataOptions?
  /// Completed epochs and optimizer steps when it was saved, if recorded.
  public var epoch: Int?
  public var globalStep: Int?
  /// Where it was read from (for messages).
  public var path: String

  public static let formatName = "quadranet-weights-v1"

  /// The weights of `model` in PyTorch layout.
  public init(
    model: VisionModel, dataset: String? = nil, normalization: Normalization? = nil, classNames: [String]? = nil,
    epoch: Int? = nil, globalStep: Int? = nil, dataOptions: DataOptions? = nil
  ) {
    opPrecondition(
      classNames.map { $0.count == model.config.classCount } ?? true,
      "WeightsCheckpoint: \(classNames?.count ?? 0) class names for \(model.config.classCount) classes")
    tensors = WeightsCheckpoint.torchStateDict(of: model)
    config = model.config
    self.dataset = dataset
    self.normalization = normalization
    self.classNames = classNames
    self.dataOptions = dataOptions
    self.epoch = epoch
    self.globalStep = globalStep
    path = "<memory>"
  }

  /// `model`'s parameters under their PyTorch names, converted to PyTorch layouts.
  public static func torchStateDict(of model: Module) -> [String: Tensor] {
    var result: [String: Tensor] = [:]
    for (name, parameter) in model.namedParameters() {
      result[name] = parameter.torchLayout.toTorch(parameter.variable.value)
    }
    return result
  }

  /// Reads a weights file (or `model.safetensors` inside a directory).
  public static func read(from path: URL) throws -> WeightsCheckpoint {
    let url = CheckpointFiles.weightsURL(for: path)
    let file = try readSafetensors(url)
    let metadata = file.metadata
    var checkpoint = WeightsCheckpoint(tensors: file.tensors, path: url.path)
    func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T? {
      guard let text = metadata[key] else { return nil }
      do {
        return try StrictJSON.decode(T.self, from: Data(text.utf8), limits: .config)
      } catch let error as JSONInputError {
        throw CheckpointError.invalidMetadata(path: url.path, key: key, reason: "not a valid \(T.self): \(error)")
      }
    }
    func integer(_ key: String) throws -> Int? {
      guard let text = metadata[key] else { return nil }
      guard let value = Int(text), value >= 0 else {
        throw CheckpointError.invalidMetadata(path: url.path, key: key, reason: "'\(text)' is not a count")
      }
      return value
    }
    checkpoint.config = try decode(ModelConfig.self, CheckpointFiles.Key.config)
    do {
      try checkpoint.config?.validate()
    } catch let error as ModelConfigError {
      throw CheckpointError.invalidMetadata(path: url.path, key: CheckpointFiles.Key.config, reason: error.message)
    }
    checkpoint.normalization = try decode(Normalization.self, CheckpointFiles.Key.normalization)
    checkpoint.dataset = metadata[CheckpointFiles.Key.dataset]
    checkpoint.classNames = try decode([String].self, CheckpointFiles.Key.classNames)
    if let names = checkpoint.classNames, let config = checkpoint.config, names.count != config.classCount {
      throw CheckpointError.invalidMetadata(
        path: url.path, key: CheckpointFiles.Key.classNames,
        reason: "\(names.count) class names for the config's \(config.classCount) classes")
    }
    checkpoint.dataOptions = try decode(DataOptions.self, CheckpointFiles.Key.dataOptions)
    do {
      try checkpoint.dataOptions?.validate()
    } catch let error as DatasetError {
      throw CheckpointError.invalidMetadata(path: url.path, key: CheckpointFiles.Key.dataOptions, reason: "\(error)")
    }
    checkpoint.epoch = try integer(CheckpointFiles.Key.epoch)
    checkpoint.globalStep = try integer(CheckpointFiles.Key.globalStep)
    return checkpoint
  }

  init(tensors: [String: Tensor], path: String) {
    self.tensors = tensors
    self.path = path
  }

  /// The safetensors metadata: format, model name, config JSON, dataset, normalization, class names, epoch, global step.
  public var metadata: [String: String] {
    var result = [CheckpointFiles.Key.format: Self.formatName]
    if let config {
      result[CheckpointFiles.Key.model] = config.name
      result[CheckpointFiles.Key.config] = Self.json(config)
    }
    if let dataset { result[CheckpointFiles.Key.dataset] = dataset }
    if let normalization { result[CheckpointFiles.Key.normalization] = Self.json(normalization) }
    if let classNames { result[CheckpointFiles.Key.classNames] = Self.json(classNames) }
    if let dataOptions { result[CheckpointFiles.Key.dataOptions] = Self.json(dataOptions) }
    if let epoch { result[CheckpointFiles.Key.epoch] = String(epoch) }
    if let globalStep { result[CheckpointFiles.Key.globalStep] = String(globalStep) }
    return result
  }

  static func json<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Configs, normalizations and training states always encode.
    return String(decoding: try! encoder.encode(value), as: UTF8.self)
  }

  /// Writes the file atomically: a reader (or a crash) sees the old file or the complete new one.
  public func write(to url: URL) throws {
    try Safetensors.write(tensors, metadata: metadata, to: url)
  }

  /// The config to build: the saved one, checked against `requested` when both exist.
  public func resolvedConfig(requested: ModelConfig?) throws -> ModelConfig {
    switch (config, requested) {
    case (let saved?, let requested?):
      let differences = ModelConfig.differences(saved, requested)
      guard differences.isEmpty else {
        throw CheckpointError.configMismatch(
          path: path, saved: saved.name, requested: requested.name, differences: differences)
      }
      return saved
    case (let saved?, nil): return saved
    case (nil, let requested?): return requested
    case (nil, nil): throw CheckpointError.missingConfig(path: path)
    }
  }

  /// Builds the model (config from the file, checked against `requested`) and loads the weights.
  public func makeModel(requested: ModelConfig? = nil) throws -> VisionModel {
    let model = try VisionModel(config: try resolvedConfig(requested: requested))
    try load(into: model)
    return model
  }

  /// Copies the weights into `model`, converting PyTorch layouts to the engine's.
  ///
  /// Everything is checked before anything is assigned, so on error the model is unchanged:
  /// every parameter must be present, no other key may be, and every shape must match.
  public func load(into model: Module) throws {
    try Self.load(tensors, into: model, path: path)
  }

  /// Checks that `tensors` (PyTorch names and layouts) are exactly `model`'s state dict, then assigns them.
  public static func load(_ tensors: [String: Tensor], into model: Module, path: String) throws {
    let parameters = model.namedParameters()
    var missing: [String] = []
    var wrongShapes: [CheckpointError.ShapeMismatch] = []
    for (name, parameter) in parameters {
      let expected = parameter.torchLayout.torchShape(engineShape: parameter.variable.shape)
      guard let tensor = tensors[name] else {
        missing.append(name)
        continue
      }
      if tensor.shape != expected {
        wrongShapes.append(.init(name: name, expected: expected, found: tensor.shape))
      }
    }
    let known = Set(parameters.map(\.name))
    let unexpected = tensors.keys.filter { !known.contains($0) }.sorted()
    guard missing.isEmpty, unexpected.isEmpty, wrongShapes.isEmpty else {
      throw CheckpointError.stateDictMismatch(
        path: path, missing: missing, unexpected: unexpected, wrongShapes: wrongShapes)
    }
    for (name, parameter) in parameters {
      parameter.variable.update(parameter.torchLayout.fromTorch(tensors[name]!).copy())
    }
  }
}

/// Reads a safetensors file; errors name the file.
func readSafetensors(_ url: URL) throws -> SafetensorsFile {
  guard FileManager.default.fileExists(atPath: url.path) else {
    throw CheckpointError.unreadable(path: url.path, reason: "no such file")
  }
  do {
    // Only regular files: reading /dev/zero or a FIFO would never end.
    _ = try BoundedFile.regularFileSize(url.path)
    return try Safetensors.read(contentsOf: url)
  } catch let error as BoundedFileError {
    throw CheckpointError.unreadable(path: url.path, reason: error.reason)
  } catch let error as SafetensorsError {
    if case .unreadable = error { throw error }
    throw CheckpointError.unreadable(path: url.path, reason: error.description)
  }
}

extension ModelConfig {
  /// Human-readable differences between two configs (empty when equal).
  public static func differences(_ saved: ModelConfig, _ requested: ModelConfig) -> [String] {
    var result: [String] = []
    func compare<T: Equatable>(_ label: String, _ a: T, _ b: T) {
      if a != b { result.append("\(label): saved \(a), requested \(b)") }
    }
    compare("name", saved.name, requested.name)
    compare("inputChannels", saved.inputChannels, requested.inputChannels)
    compare("classCount", saved.classCount, requested.classCount)
    compare("stemPatchSize", saved.stemPatchSize, requested.stemPatchSize)
    compare("stemKernelSize", saved.stemKernel, requested.stemKernel)
    compare("depths", saved.depths, requested.depths)
    compare("widths", saved.widths, requested.widths)
    func short(_ mixer: TokenMixer) -> String {
      switch mixer {
      case .quadratic(let k): return "quadratic(\(k))"
      case .depthwise(let k): return "depthwise(\(k))"
      case .gnConv(let order, let scale): return "gnConv(order \(order), scale \(scale))"
      }
    }
    compare("mixers", saved.mixers.map(short), requested.mixers.map(short))
    compare("mlpRatio", saved.mlpRatio, requested.mlpRatio)
    compare("layerScaleInit", saved.layerScaleInit, requested.layerScaleInit)
    compare("dropPathRate", saved.dropPathRate, requested.dropPathRate)
    compare("weightInitialization", "\(saved.weightInitialization)", "\(requested.weightInitialization)")
    if result.isEmpty && saved != requested { result.append("configs differ") }
    return result
  }
}

import Foundation
import QuadraData
import QuadraModels
import QuadraTraining

/// Why a checkpoint cannot be deployed (exported or used for prediction).
public enum DeploymentError: Error, Equatable, CustomStringConvertible, LocalizedError {
  /// The weights carry no input normalization, which inference needs to prepare raw images.
  case missingNormalization(path: String)
  /// An input does not fit the model (channels, size, rank, layout); the message names the input.
  case invalidInput(input: String, reason: String)
  /// A command-line value outside its allowed range.
  case invalidOption(option: String, reason: String)

  public var description: String {
    switch self {
    case .missingNormalization(let path):
      return "\(path): the checkpoint records no input normalization (metadata 'normalization'); "
        + "save it with `quadranet train` or add {\"maxValue\":…,\"mean\":…,\"std\":…} to its metadata"
    case .invalidInput(let input, let reason): return "\(input): \(reason)"
    case .invalidOption(let option, let reason): return "\(option): \(reason)"
    }
  }

  public var errorDescription: String? { description }
}

/// A checkpoint ready for inference: the model with its weights loaded and in evaluation mode,
/// the input normalization it was trained with, and its class names.
public struct DeployableModel {
  public let checkpoint: WeightsCheckpoint
  public let model: VisionModel
  /// Class names in label order: the checkpoint's `class_names` metadata, else the names of its dataset when
  /// known (Fashion-MNIST checkpoints saved before class names were recorded), else nil.
  public let classNames: [String]?

  /// Reads a weights file (or a run directory) and builds its model; `requested` is checked against the saved config.
  public init(contentsOf url: URL, requested: ModelConfig? = nil) throws {
    try self.init(checkpoint: WeightsCheckpoint.read(from: url), requested: requested)
  }

  public init(checkpoint: WeightsCheckpoint, requested: ModelConfig? = nil) throws {
    self.checkpoint = checkpoint
    model = try checkpoint.makeModel(requested: requested)
    model.setTraining(false)
    classNames =
      checkpoint.classNames ?? Self.classNames(dataset: checkpoint.dataset, classCount: model.config.classCount)
  }

  public var config: ModelConfig { model.config }

  /// The normalization recorded in the checkpoint, or an error naming the file.
  public func requiredNormalization() throws -> Normalization {
    guard let normalization = checkpoint.normalization else {
      throw DeploymentError.missingNormalization(path: checkpoint.path)
    }
    return normalization
  }

  /// The smallest square input the model accepts: the stem stride doubled per downsampling.
  public var minimumInputSize: Int { config.minimumResolution }

  /// The display name of class `index`: its name when known, else the index.
  public func className(_ index: Int) -> String {
    guard let classNames, index < classNames.count else { return String(index) }
    return classNames[index]
  }

  /// Class names known for a dataset recorded in checkpoints (`Dataset.classNames` is not saved, the dataset name is).
  static func classNames(dataset: String?, classCount: Int) -> [String]? {
    guard let dataset, let name = try? DatasetName(parsing: dataset), name == .fashionMNIST else { return nil }
    let names = DatasetSplits.fashionMNISTClassNames
    return names.count == classCount ? names : nil
  }
}

extension Dataset {
  /// The same images normalized with `target` instead of ``normalization`` (an exact affine map per pixel:
  /// back to raw values with the current statistics, forward with the target's).
  ///
  /// `eval` and `predict` use this so a model always sees inputs prepared with the statistics it was
  /// trained with, whatever dataset it is evaluated on.
  public func renormalized(to target: Normalization) -> Dataset {
    guard target != normalization else { return self }
    let source = normalization
    // x' = ((x·s_src + m_src)·max_src / max_dst − m_dst) / s_dst = x·scale + shift
    let scale = source.std * source.maxValue / target.maxValue / target.std
    let shift = (source.mean * source.maxValue / target.maxValue - target.mean) / target.std
    let values = images.scalars.map { $0 * scale + shift }
    var copy = self
    copy.images = Tensor(shape: images.shape, scalars: values)
    copy.normalization = target
    return copy
  }
}

import Foundation
import QuadraData
import QuadraIO
import QuadraInference
import QuadraModels

/// How a rank-4 input array orders its axes.
public enum InputLayout: String, CaseIterable, Sendable {
  /// NHWC when only the last axis equals the model's channel count, NCHW when only axis 1 does.
  case auto
  case nhwc
  case nchw
}

/// Raw images read from one input file, in NHWC, with the file they came from.
public struct ImageInput {
  /// The path, for messages and results.
  public var source: String
  /// Raw pixel values `[N, H, W, C]` (not yet normalized).
  public var pixels: [Float]
  public var shape: [Int]

  public var count: Int { shape[0] }

  /// Reads an IDX image file (`[N, H, W]` or `[N, H, W, C]` unsigned bytes, optionally gzipped), a NumPy
  /// `.npy` array (uint8 or float32; `[N, H, W]`, `[N, H, W, C]` or `[N, C, H, W]`) or one PNG or JPEG image
  /// (see ``decodedImage(_:for:)``), recognized by its magic bytes, and checks it against `model`: channel
  /// count, minimum size, finite values.
  public static func read(_ url: URL, for model: DeployableModel, layout: InputLayout = .auto) throws -> ImageInput {
    let path = url.path
    guard FileManager.default.fileExists(atPath: path) else {
      throw DeploymentError.invalidInput(input: path, reason: "no such file")
    }
    let handle: FileHandle
    do { handle = try FileHandle(forReadingFrom: url) } catch {
      throw DeploymentError.invalidInput(input: path, reason: "cannot open: \(error.localizedDescription)")
    }
    let head = (try? handle.read(upToCount: 8)) ?? nil
    try? handle.close()
    let shape: [Int]
    let values: [Float]
    if let head, ImageFormat.sniff(head) != nil {
      (shape, values) = try decodedImage(url, for: model)
    } else if let head, [UInt8](head.prefix(NumPyArray.magic.count)) == NumPyArray.magic {
      let array = try NumPyArray.read(contentsOf: url)
      (shape, values) = (array.shape, array.floats)
    } else {
      let array: IDXArray
      do { array = try IDX.read(contentsOf: url) } catch {
        throw DeploymentError.invalidInput(
          input: path, reason: "neither a NumPy .npy file nor a valid IDX image file (\(error))")
      }
      guard array.dimensions.count == 3 || array.dimensions.count == 4 else {
        throw DeploymentError.invalidInput(
          input: path, reason: "IDX images must be [N, H, W] or [N, H, W, C], found dimensions \(array.dimensions)")
      }
      (shape, values) = (array.dimensions, array.bytes.map(Float.init))
    }
    return try ImageInput(source: path, shape: shape, values: values, model: model, layout: layout)
  }

  /// One PNG or JPEG image as `[1, H, W, C]` raw pixels, prepared as evaluation prepares an image folder's test
  /// images: gray repeated to RGB for a 3-channel model, and — when the checkpoint records the training
  /// `--resolution` R — the shorter side resized to ⌊R / 0.875⌋ and the centre R × R cut out (timm's evaluation
  /// transform); without a recorded resolution the image is used at its own size.
  static func decodedImage(_ url: URL, for model: DeployableModel) throws -> (shape: [Int], values: [Float]) {
    var image: DecodedImage
    do { image = try ImageDecoding.decode(contentsOf: url) } catch let error as ImageDecodingError {
      throw error  // it names the file already; wrapping it would print the path twice
    } catch {
      throw DeploymentError.invalidInput(input: url.path, reason: "\(error)")
    }
    let channels = model.config.inputChannels
    if image.channels == 3 && channels == 1 {
      throw DeploymentError.invalidInput(
        input: url.path, reason: "it is an RGB image; \(model.config.name) takes 1-channel (gray) images")
    }
    if channels == 3 { image = ImageResizing.grayToRGB(image) }
    if let resolution = model.checkpoint.dataOptions?.resolution {
      let shorter = Int(Double(resolution) / ImageResizing.evaluationCropFraction)
      image = ImageResizing.resizeAndCenterCrop(image, shorterSide: shorter, crop: resolution)
    }
    return ([1, image.height, image.width, image.channels], image.pixels.map(Float.init))
  }

  /// Checks and converts an array of raw pixels to NHWC; `source` names it in errors.
  public init(source: String, shape: [Int], values: [Float], model: DeployableModel, layout: InputLayout) throws {
    func fail(_ reason: String) -> DeploymentError { .invalidInput(input: source, reason: reason) }
    let channels = model.config.inputChannels
    var nhwc: [Int]
    var needsTranspose = false
    switch shape.count {
    case 3:
      guard channels == 1 else {
        throw fail("shape \(shape) has one channel ([N, H, W]); \(model.config.name) takes \(channels)-channel images")
      }
      nhwc = shape + [1]
    case 4:
      let lastIsChannels = shape[3] == channels, secondIsChannels = shape[1] == channels
      var resolved = layout
      if layout == .auto {
        switch (lastIsChannels, secondIsChannels) {
        case (true, false): resolved = .nhwc
        case (false, true): resolved = .nchw
        case (true, true):
          throw fail("shape \(shape) is ambiguous: both axis 1 and axis 3 equal the model's \(channels) channel(s); pass --layout nhwc or nchw")
        case (false, false):
          throw fail("shape \(shape) has \(shape[3]) (NHWC) or \(shape[1]) (NCHW) channels; \(model.config.name) takes \(channels)")
        }
      }
      if resolved == .nhwc {
        guard lastIsChannels else { throw fail("NHWC shape \(shape) has \(shape[3]) channels; \(model.config.name) takes \(channels)") }
        nhwc = shape
      } else {
        guard secondIsChannels else { throw fail("NCHW shape \(shape) has \(shape[1]) channels; \(model.config.name) takes \(channels)") }
        nhwc = [shape[0], shape[2], shape[3], shape[1]]
        needsTranspose = true
      }
    default:
      throw fail("shape \(shape) must be [N, H, W], [N, H, W, C] or [N, C, H, W]")
    }
    guard nhwc[0] > 0 else { throw fail("holds no images (shape \(shape))") }
    let minimum = model.minimumInputSize
    guard nhwc[1] >= minimum, nhwc[2] >= minimum else {
      throw fail(
        "images are \(nhwc[1])×\(nhwc[2]), below \(model.config.name)'s minimum of \(minimum)×\(minimum) "
          + "(stem \(model.config.stemPatchSize), \(model.config.depths.count - 1) downsamplings)")
    }
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      throw fail("element \(bad) is \(values[bad]); pixel values must be finite")
    }
    self.source = source
    self.shape = nhwc
    if needsTranspose {
      let (n, h, w, c) = (nhwc[0], nhwc[1], nhwc[2], nhwc[3])
      var result = [Float](repeating: 0, count: values.count)
      for image in 0..<n {
        for channel in 0..<c {
          for row in 0..<h {
            for column in 0..<w {
              result[((image * h + row) * w + column) * c + channel] = values[((image * c + channel) * h + row) * w + column]
            }
          }
        }
      }
      pixels = result
    } else {
      pixels = values
    }
  }

  /// The network input: `(pixel / maxValue − mean) / std`, NHWC.
  public func normalized(with normalization: Normalization) -> Tensor {
    Tensor(shape: shape, scalars: pixels.map { normalization.normalize(raw: $0) })
  }
}

/// A class and its softmax probability.
public struct ClassScore: Codable, Equatable, Sendable {
  public var index: Int
  public var name: String
  public var probability: Float
}

/// The top classes of one image.
public struct ImagePrediction: Codable, Equatable, Sendable {
  /// The input file and the image's position in it.
  public var input: String
  public var index: Int
  public var top: [ClassScore]
}

/// Runs a deployable model on raw images.
public struct Predictor {
  public let deployable: DeployableModel
  public let normalization: Normalization
  /// Images per forward pass.
  public let batchSize: Int
  /// The model compiled for tape-free inference (its workspace is reused across batches of one size).
  let engine: InferenceEngine

  public static let batchSizeRange = 1...65_536

  public init(_ deployable: DeployableModel, batchSize: Int = 64) throws {
    guard Self.batchSizeRange.contains(batchSize) else {
      throw DeploymentError.invalidOption(
        option: "--batch-size", reason: "must be in \(Self.batchSizeRange.lowerBound)...\(Self.batchSizeRange.upperBound), got \(batchSize)")
    }
    self.deployable = deployable
    self.normalization = try deployable.requiredNormalization()
    self.batchSize = batchSize
    // Prediction is evaluation: drop path off (as the tape forward the engine reproduces).
    deployable.model.setTraining(false)
    engine = try InferenceEngine(model: deployable.model)
  }

  /// Logits `[N, classes]` of all images of `input`, in order (the tape-free inference engine).
  public func logits(_ input: ImageInput) throws -> Tensor {
    let images = input.normalized(with: normalization)
    return try logits(normalizedImages: images)
  }

  /// Logits of already-normalized NHWC images, computed `batchSize` images at a time.
  public func logits(normalizedImages images: Tensor) throws -> Tensor {
    guard images.rank == 4 else {
      throw DeploymentError.invalidOption(option: "images", reason: "must be NHWC [N, H, W, C], got shape \(images.shape)")
    }
    let count = images.shape[0]
    let imageSize = images.count / max(count, 1)
    let classes = deployable.config.classCount
    let result = Tensor(uninitializedShape: [count, classes])
    try images.withUnsafeBufferPointer { all in
      for start in stride(from: 0, to: count, by: batchSize) {
        let end = min(start + batchSize, count)
        try engine.logits(
          images: all.baseAddress! + start * imageSize, batch: end - start, height: images.shape[1],
          width: images.shape[2], channels: images.shape[3], into: result.buffer.pointer + start * classes)
      }
    }
    return result
  }

  /// The `k` most probable classes of each row of `logits` (ties: the lower index first).
  public func topClasses(_ logits: Tensor, k: Int, input: String) throws -> [ImagePrediction] {
    let classes = deployable.config.classCount
    guard (1...classes).contains(k) else {
      throw DeploymentError.invalidOption(option: "--top-k", reason: "must be in 1...\(classes) (the model's classes), got \(k)")
    }
    let values = logits.scalars
    return (0..<logits.shape[0]).map { row in
      let probabilities = Self.softmax(values[row * classes..<(row + 1) * classes])
      let order = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
      let top = order.prefix(k).map {
        ClassScore(index: $0, name: deployable.className($0), probability: Float(probabilities[$0]))
      }
      return ImagePrediction(input: input, index: row, top: top)
    }
  }

  /// A numerically stable softmax in Double.
  static func softmax(_ logits: ArraySlice<Float>) -> [Double] {
    let maximum = Double(logits.max() ?? 0)
    let exponentials = logits.map { exp(Double($0) - maximum) }
    let sum = exponentials.reduce(0, +)
    return exponentials.map { $0 / sum }
  }
}

/// Writes logits `[N, classes]` as `.npy` (float32) or `.json`, chosen by the file extension.
public enum LogitsWriter {
  public struct JSONLogits: Codable, Equatable {
    public var model: String
    public var inputs: [String]
    public var logits: [[Float]]

    public init(model: String, inputs: [String], logits: [[Float]]) {
      self.model = model
      self.inputs = inputs
      self.logits = logits
    }
  }

  /// `inputs` names each row's source (`file[index]`).
  public static func write(_ logits: Tensor, inputs: [String], model: String, to url: URL) throws {
    switch url.pathExtension.lowercased() {
    case "npy":
      let array = NumPyArray(shape: logits.shape, elements: .float32(logits.scalars))
      try AtomicFile.write(array.encoded(), to: url)
    case "json":
      let classes = logits.shape[1]
      let values = logits.scalars
      let rows = (0..<logits.shape[0]).map { Array(values[$0 * classes..<($0 + 1) * classes]) }
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      try AtomicFile.write(try encoder.encode(JSONLogits(model: model, inputs: inputs, logits: rows)), to: url)
    default:
      throw DeploymentError.invalidOption(
        option: "--logits", reason: "\(url.path) must end in .npy (float32 [N, classes]) or .json")
    }
  }
}

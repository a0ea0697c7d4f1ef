import Foundation
import QuadraIO
import Testing

@testable import QuadraData
@testable import QuadraModels
@testable import QuadraTraining

/// The inputs that crashed or hung the CLI before every input was bounded, each now a thrown error
/// whose message names the field and the allowed range.
@Suite struct BoundsTests {
  /// The error `body` throws, as text ("" when it does not throw).
  func message(_ body: () throws -> Void) -> String {
    thrownError(body).map { "\($0)" } ?? ""
  }

  func config(_ change: (inout ModelConfig) -> Void) -> ModelConfig {
    var config = Tiny.quadraNet
    change(&config)
    return config
  }

  @Test func configFieldsOutOfRangeNameTheFieldAndRange() {
    let cases: [(ModelConfig, String)] = [
      (config { $0.mixers[1] = .gnConv(order: 65, scale: 1) }, "mixers[1].gnConv.order: 65 is outside the allowed range 1...8"),
      (config { $0.mixers[0] = .gnConv(order: 5, scale: 1) }, "order 5 needs widths[0] divisible by 16, got 8"),
      (config { $0.mixers[0] = .gnConv(order: 2, scale: .infinity) }, "mixers[0].gnConv.scale"),
      (config { $0.mixers[0] = .quadratic(kernelSize: 1 << 31) }, "mixers[0].quadratic.kernelSize: 2147483648"),
      (config { $0.mixers[1] = .depthwise(kernelSize: 4) }, "must be odd"),
      (config { $0.stemPatchSize = 1 << 31 }, "stemPatchSize: 2147483648 is outside the allowed range 1...32"),
      (config { $0.stemKernelSize = 1 << 40 }, "stemKernelSize"),
      (config { $0.widths = [100_000, 16] }, "widths[0]: 100000 is outside the allowed range 1...8192"),
      (config { $0.classCount = 1 << 40 }, "classCount: 1099511627776 is outside the allowed range 1...100000"),
      (config { $0.depths = [1_000_000, 1] }, "depths[0]: 1000000 is outside the allowed range 0...64"),
      (config { $0.depths = Array(repeating: 1, count: 9) }, "depths: 9 stages"),
      (config { $0.depths = [] }, "depths: 0 stages"),
      (config { $0.layerScaleInit = .nan }, "layerScaleInit: nan"),
      (config { $0.dropPathRate = .nan }, "dropPathRate: nan is outside the allowed range [0, 1)"),
      (config { $0.mlpRatio = 1 << 20 }, "mlpRatio"),
      (config { $0.inputChannels = 0 }, "inputChannels: 0"),
      (config { $0.weightInitialization = .fanInScaled(gain: -1) }, "weightInitialization: fanInScaled.gain: -1.0"),
      (config { $0.weightInitialization = .truncatedNormal(std: 1e30) }, "weightInitialization: truncatedNormal.std"),
      (config { $0.weightInitialization = .truncatedNormal(std: .nan) }, "truncatedNormal.std: nan"),
      (config { $0.name = String(repeating: "x", count: 129) }, "name: must be 1...128 characters"),
      (config { $0.name = "../../etc" }, "name:"),
    ]
    for (config, expected) in cases {
      let text = message { try config.validate() }
      #expect(text.contains(expected), "\(text)")
      // Building the model checks first: no trap, no allocation.
      #expect(throws: ModelConfigError.self) { _ = try VisionModel(config: config) }
    }
    #expect(throws: Never.self) { try Tiny.quadraNet.validate() }
    for config in ModelRegistry.all { #expect(throws: Never.self) { try config.validate() } }
  }

  @Test func truncatedNormalSamplingAlwaysEnds() {
    var generator = RandomGenerator(seed: 3)
    // The interval holds ~1e-30 of the mass: rejection alone would never end.
    let wide = Tensor.truncatedNormal(shape: [1000], std: 1e30, lower: -2, upper: 2, using: &generator)
    #expect(wide.scalars.allSatisfy { $0 >= -2 && $0 <= 2 })
    let empty = Tensor.truncatedNormal(shape: [10], std: 1, lower: 1, upper: -1, using: &generator)
    #expect(empty.scalars.count == 10)
    _ = Tensor.truncatedNormal(shape: [10], std: .nan, using: &generator)
    // Well-posed intervals keep the exact rejection sampler's values.
    var a = RandomGenerator(seed: 9)
    var b = RandomGenerator(seed: 9)
    let sampled = Tensor.truncatedNormal(shape: [500], std: 1, lower: -0.5, upper: 0.5, using: &a)
    let reference: [Float] = (0..<500).map { _ in
      var v: Float
      repeat { v = b.nextNormal() } while v < -0.5 || v > 0.5
      return v
    }
    #expect(sampled.scalars == reference)
  }

  @Test func complexitySaturatesInsteadOfOverflowing() {
    let absurd = ModelConfig(
      name: "absurd", inputChannels: 1 << 40, classCount: 1 << 40, stemPatchSize: 1, depths: [1 << 40],
      widths: [1 << 40], mixers: [.gnConv(order: 1 << 40, scale: 1)], mlpRatio: 1 << 40)
    #expect(absurd.parameterCount == Int.max)
    #expect(absurd.macs(resolution: 1 << 40) == Int.max)
    #expect(absurd.trainingActivationBytes(batchSize: 1 << 40, resolution: 1 << 40) == Int.max)
    #expect(Tiny.quadraNet.stageResolutions(inputResolution: -5) == [0, 0])
  }

  @Test func memoryLimitsParse() throws {
    #expect(try MemoryBudget.parseLimit("512M", source: "--memory-limit") == 512 << 20)
    #expect(try MemoryBudget.parseLimit("1.5GiB", source: "--memory-limit") == 3 << 29)
    #expect(try MemoryBudget.parseLimit("134217728", source: "--memory-limit") == 1 << 27)
    for bad in ["", "0", "-1G", "abc", "1e400", "nanG", "1K", "100000T", "8 G G", String(repeating: "9", count: 100)] {
      let text = message { _ = try MemoryBudget.parseLimit(bad, source: "--memory-limit") }
      #expect(text.contains("--memory-limit") && text.contains("not a memory size"), "\(bad): \(text)")
    }
    #expect(MemoryBudget.availableBytes >= MemoryBudget.minimumLimit)
    #expect(MemoryBudget.availableBytes <= Int(clamping: ProcessInfo.processInfo.physicalMemory))
  }

  @Test func modelsBeyondTheMemoryLimitAreRefusedBeforeAllocating() throws {
    try MemoryBudget.withLimit(64 << 20) {
      try checkModelsBeyondTheMemoryLimit()
    }
  }

  func checkModelsBeyondTheMemoryLimit() throws {
    // Valid in every field, but 4 × 4 bytes × ~2·10¹⁰ parameters.
    let huge = ModelConfig(
      name: "huge", depths: [64, 64], widths: [8192, 8192], mixers: [.quadratic(kernelSize: 7), .depthwise(kernelSize: 7)],
      mlpRatio: 16)
    #expect(throws: Never.self) { try huge.validate() }
    let text = message { _ = try VisionModel(config: huge) }
    #expect(text.contains("model huge") && text.contains("64.0 MiB") && text.contains("--memory-limit"), "\(text)")
    // A training step's activations count too.
    let step = message { try Tiny.quadraNet.checkTrainingMemory(batchSize: 65_536, resolution: 4096) }
    #expect(step.contains("training step") && step.contains("QUADRANET_MEMORY_LIMIT"), "\(step)")
    #expect(throws: Never.self) { try Tiny.quadraNet.checkTrainingMemory(batchSize: 16, resolution: 8) }
    let inference = message { try Tiny.quadraNet.checkInferenceMemory(batchSize: 65_536, resolution: 4096) }
    #expect(inference.contains("evaluating model tiny-quadranet"), "\(inference)")
    #expect(throws: Never.self) { try Tiny.quadraNet.checkInferenceMemory(batchSize: 250, resolution: 8) }
    // Inference keeps far less alive than a training step.
    let inferenceBytes = Tiny.quadraNet.inferenceActivationBytes(batchSize: 64, resolution: 28)
    #expect(inferenceBytes > 0 && inferenceBytes < Tiny.quadraNet.trainingActivationBytes(batchSize: 64, resolution: 28))
  }

  @Test func configJSONErrorsGiveThePath() {
    func decode(_ text: String) -> String { message { _ = try ModelConfig.decodeJSON(Data(text.utf8)) } }
    let valid = WeightsCheckpoint.json(Tiny.quadraNet)
    #expect(decode(valid).isEmpty)
    let wrongType = valid.replacingOccurrences(of: #"{"kernelSize":3}"#, with: #"{"kernelSize":"3"}"#)
    #expect(decode(wrongType).hasPrefix("mixers[0].quadratic.kernelSize: expected an integer"), "\(decode(wrongType))")
    let duplicate = valid.replacingOccurrences(of: #""mlpRatio":2"#, with: #""mlpRatio":2,"mlpRatio":4"#)
    #expect(decode(duplicate).contains("duplicate key 'mlpRatio'"), "\(decode(duplicate))")
    // Escapes spell the same key: still a duplicate (Python's json would keep the last one).
    let escaped = valid.replacingOccurrences(of: #""mlpRatio":2"#, with: #""mlpRatio":2,"mlp\u0052atio":4"#)
    #expect(decode(escaped).contains("duplicate key"), "\(decode(escaped))")
    let nested = valid.replacingOccurrences(of: #"{"kernelSize":3}"#, with: #"{"kernelSize":3,"kernelSize":5}"#)
    #expect(decode(nested).hasPrefix("mixers[0].quadratic: duplicate key 'kernelSize'"), "\(decode(nested))")
    let bomb = String(repeating: "[", count: 1_000_000)
    #expect(decode(bomb).contains("nesting deeper than 16 levels"))
    let big = "{\"name\":\"" + String(repeating: "x", count: 2 << 20) + "\"}"
    #expect(decode(big).contains("at most 1048576"))
    let floatRange = valid.replacingOccurrences(of: #""layerScaleInit":0.1"#, with: #""layerScaleInit":1e39"#)
    #expect(decode(floatRange) == "layerScaleInit: the number 1e39 is out of range for this field", "\(decode(floatRange))")
    let intRange = valid.replacingOccurrences(of: #""mlpRatio":2"#, with: #""mlpRatio":-9223372036854775809"#)
    #expect(decode(intRange).hasPrefix("mlpRatio: "), "\(decode(intRange))")
    let outOfRange = valid.replacingOccurrences(of: #""classCount":10"#, with: #""classCount":1099511627776"#)
    #expect(decode(outOfRange).contains("classCount: 1099511627776 is outside the allowed range 1...100000"))
    for malformed in ["", "{", "{\"a\":}", "[1,]", "01", "1.", "\"\\x\"", "\"\\ud800\"", "nul", "{} {}", "\"a\u{1}\""] {
      #expect(!decode(malformed).isEmpty, "\(malformed)")
    }
  }

  @Test func checkpointConfigMetadataIsStrict() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let model = try VisionModel(config: Tiny.quadraNet)
    var checkpoint = WeightsCheckpoint(model: model)
    checkpoint.config = config { $0.mixers[0] = .gnConv(order: 70, scale: 1) }
    let url = directory.appendingPathComponent("model.safetensors")
    try checkpoint.write(to: url)
    let text = message { _ = try WeightsCheckpoint.read(from: url) }
    #expect(text.contains("metadata 'config'") && text.contains("mixers[0].gnConv.order: 70"), "\(text)")
    #expect(message { _ = try WeightsCheckpoint.read(from: URL(fileURLWithPath: "/dev/zero")) }.contains("not a regular file"))
  }

  // MARK: Safetensors

  /// A safetensors file whose header is `header` (the length prefix matches it) and whose data is `payload`.
  func safetensors(header: String, payload: [UInt8] = []) -> Data {
    var data = Data()
    withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: payload)
    return data
  }

  @Test func safetensorsHeadersAreStrict() {
    let tensor = #"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
    #expect(message { _ = try Safetensors.decode(safetensors(header: "{\"a\":\(tensor)}", payload: [0, 0, 0, 0])) }.isEmpty)
    let duplicate = safetensors(header: "{\"a\":\(tensor),\"a\":\(tensor)}", payload: [0, 0, 0, 0])
    #expect(message { _ = try Safetensors.decode(duplicate) }.contains("duplicate key 'a'"))
    let metadata = safetensors(header: #"{"__metadata__":{"epoch":"1","epoch":"2"}}"#)
    #expect(message { _ = try Safetensors.decode(metadata) }.contains("__metadata__: duplicate key 'epoch'"))
    let bomb = safetensors(header: "{\"a\":" + String(repeating: "[", count: 200_000) + "}")
    #expect(message { _ = try Safetensors.decode(bomb) }.contains("nesting deeper than 8 levels"))
    let huge = safetensors(header: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, payload: [0, 0, 0, 0])
    #expect(message { _ = try Safetensors.decode(huge) }.contains("needs 9223372036854775807 bytes"))
  }

  // MARK: Gzip and IDX

  static let images = IDX.encode(IDXArray(dimensions: [3, 4, 5], bytes: (0..<60).map { UInt8($0) }))

  @Test func gzipBombIsStoppedAtTheHeaderSize() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    // 64 MiB of payload behind a header announcing 60 bytes: compresses to ~64 KB.
    var bomb = Self.images
    bomb.append(Data(count: 64 << 20))
    let url = directory.appendingPathComponent("train-images-idx3-ubyte.gz")
    try Gzip.compress(bomb).write(to: url)
    let text = message { _ = try IDX.read(contentsOf: url) }
    #expect(text.contains("decompresses to more than the 76 bytes its IDX header announces"), "\(text)")
    // The inflater stops at its limit too.
    #expect(throws: GzipError.tooLarge(limit: 1 << 20)) { _ = try Gzip.decompress(Gzip.compress(bomb), maximumBytes: 1 << 20) }
    #expect(try Gzip.decompressedPrefix(Gzip.compress(bomb), count: 10) == bomb.prefix(10))
  }

  @Test func idxHeadersAreCheckedAgainstTheData() throws {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let url = directory.appendingPathComponent("x-idx3-ubyte.gz")
    // Short payload, gzipped.
    try Gzip.compress(Self.images.dropLast(7)).write(to: url)
    #expect(message { _ = try IDX.read(contentsOf: url) }.contains("truncated: expected 76 bytes, found 69"))
    // Dimensions whose product overflows, or exceeds the cap.
    var huge = Self.images
    huge.replaceSubrange(4..<16, with: [UInt8](repeating: 0xFF, count: 12))
    #expect(message { _ = try IDX.parse(huge, path: "h") }.contains("at most 4294967296 are supported"))
    try Gzip.compress(huge).write(to: url)
    #expect(message { _ = try IDX.read(contentsOf: url) }.contains("at most 4294967296 are supported"))
    // A header within the cap but beyond the memory limit.
    var large = Self.images
    large.replaceSubrange(4..<8, with: [0x00, 0x80, 0x00, 0x00])  // 8M images of 4×5
    let text = MemoryBudget.withLimit(64 << 20) { message { _ = try IDX.parse(large, path: "l") } }
    #expect(text.contains("l (IDX dimensions [8388608, 4, 5]) needs about"), "\(text)")
    // Images need at least one pixel per side.
    var flat = Self.images
    flat.replaceSubrange(8..<12, with: [0, 0, 0, 0])
    flat = flat.prefix(16)
    try flat.write(to: url)
    #expect(message { _ = try IDX.readImages(contentsOf: url) }.contains("rows and columns in 1...4096"))
    #expect(message { _ = try IDX.read(contentsOf: URL(fileURLWithPath: "/dev/zero")) }.contains("not a regular file"))
  }

  // MARK: Training state

  /// A training checkpoint after one epoch; `edit` changes its state before it is written back.
  func readEditedState(_ edit: (inout TrainingState) -> Void) throws -> String {
    let directory = try makeTemporaryDirectory()
    defer { removeDirectory(directory) }
    let splits = try FuzzTests.splits.get()
    var options = Tiny.options
    options.epochs = 2
    let trainer = try Trainer(
      model: try VisionModel(config: Tiny.quadraNet, seed: 1), splits: splits, dataset: "digits", options: options)
    try trainer.run(outputDirectory: directory, stopAfterEpoch: 1)
    var state = try TrainingCheckpoint.read(from: directory).state
    edit(&state)
    var tensors: [String: Tensor] = [:]
    for (name, tensor) in trainer.checkpoint().optimizerMoments { tensors[TrainingCheckpoint.optimizerPrefix + name] = tensor }
    try FuzzTests.writeState(
      json: WeightsCheckpoint.json(state), tensors: tensors, epoch: 1, step: state.globalStep, to: directory)
    return message {
      let checkpoint = try TrainingCheckpoint.read(from: directory)
      _ = try Trainer(resuming: checkpoint, splits: splits, dataset: "digits")
    }
  }

  @Test func damagedTrainingStatesAreRejected() throws {
    #expect(try readEditedState { _ in }.isEmpty)
    let cases: [((inout TrainingState) -> Void, String)] = [
      ({ $0.batchIterator.position = -1 }, "batchIterator.position: -1 is outside the allowed range 0...32"),
      ({ $0.batchIterator.position = 8 }, "not a multiple of the batch size 16"),
      ({ $0.options.epochs = 1 << 62 }, "options: invalid option: epochs must be in 1...10000"),
      ({ $0.batchIterator.shuffleGenerator.state = [1, 2, 3] }, "batchIterator.shuffleGenerator.state: must be 4"),
      ({ $0.dropPathGenerator.state = [0, 0, 0, 0] }, "dropPathGenerator.state"),
      ({ $0.globalStep = 1 << 40 }, "globalStep: 1099511627776 is outside the allowed range 0...2"),
      ({ $0.optimizerStep = -3 }, "optimizerStep"),
      ({ $0.history = [] }, "history: has 0 entries"),
      ({ $0.history[0].epoch = 7 }, "history[0].epoch"),
      ({ $0.history[0].testAccuracy = 2 }, "history[0]"),
      ({ $0.trainCount = -1 }, "trainCount"),
      ({ $0.threads = 0 }, "threads: 0"),
      ({ $0.options.augmentation = Augmentation(padding: 0); $0.options.augmentation?.padding = -4 }, "crop padding"),
      ({ $0.schedule.totalSteps = 1 << 50 }, "schedule.totalSteps"),
      ({ $0.options.learningRate = -1 }, "learning rate must be finite and positive"),
    ]
    for (edit, expected) in cases {
      let text = try readEditedState(edit)
      #expect(text.contains("metadata 'training_state'") && text.contains(expected), "\(expected) → \(text)")
    }
  }
}

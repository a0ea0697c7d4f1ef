import Foundation
import QuadraData
import QuadraDeploy
import QuadraModels
import QuadraTraining
import Testing

@Suite("Prediction")
struct PredictionTests {
  let count = 5

  /// Raw digit images as files of every supported kind, all holding the same pixels.
  func writeFixtures(in directory: URL, raw: [Float]) throws -> [URL] {
    let bytes = raw.map { UInt8($0) }
    let idx = directory.appendingPathComponent("images-idx3-ubyte")
    try IDX.encode(IDXArray(dimensions: [count, 8, 8], bytes: bytes)).write(to: idx)
    let idx4 = directory.appendingPathComponent("images-nhwc.idx")
    try IDX.encode(IDXArray(dimensions: [count, 8, 8, 1], bytes: bytes)).write(to: idx4)
    let npyBytes = directory.appendingPathComponent("bytes.npy")
    try NumPyArray(shape: [count, 8, 8], elements: .uint8(bytes)).encoded().write(to: npyBytes)
    let npyNHWC = directory.appendingPathComponent("nhwc.npy")
    try NumPyArray(shape: [count, 8, 8, 1], elements: .float32(raw)).encoded().write(to: npyNHWC)
    let npyNCHW = directory.appendingPathComponent("nchw.npy")
    try NumPyArray(shape: [count, 1, 8, 8], elements: .float32(raw)).encoded().write(to: npyNCHW)
    return [idx, idx4, npyBytes, npyNHWC, npyNCHW]
  }

  @Test("IDX and .npy inputs (uint8/float32, [N,H,W], NHWC, NCHW) give the same logits, normalized with the checkpoint's statistics")
  func inputsAgree() throws {
    let deployable = try TestModels.deployable(TestModels.quadratic)
    let predictor = try Predictor(deployable, batchSize: 2)
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let raw = TestModels.rawImages(count: count)
    let files = try writeFixtures(in: directory, raw: raw)

    // The reference: the engine's forward on images normalized by hand with the checkpoint's statistics.
    let normalized = Tensor(shape: [count, 8, 8, 1], scalars: raw.map { ($0 / 16 - 0.3) / 0.4 })
    let expected = GradientMode.withoutRecording { deployable.model(Variable(normalized)).value.scalars }
    for file in files {
      let input = try ImageInput.read(file, for: deployable)
      #expect(input.shape == [count, 8, 8, 1], "\(file.lastPathComponent)")
      let logits = try predictor.logits(input)
      #expect(logits.shape == [count, 10])
      // The predictor runs the inference engine: equal to the tape forward up to rounding.
      let difference = zip(logits.scalars, expected).map { abs($0 - $1) }.max()!
      #expect(difference <= 1e-4 * expected.map(abs).max()!, "\(file.lastPathComponent): max |Δ| \(difference)")
    }
  }

  @Test("top-k lists the most probable classes with probabilities, and class names when known")
  func topClasses() throws {
    let fashion = try TestModels.deployable(TestModels.convnext, dataset: "fashion-mnist")
    let predictor = try Predictor(fashion)
    let logits = Tensor(shape: [2, 10], scalars: (0..<10).map(Float.init) + (0..<10).map { Float(9 - $0) })
    let predictions = try predictor.topClasses(logits, k: 3, input: "x.npy")
    #expect(predictions.map { $0.top.map(\.index) } == [[9, 8, 7], [0, 1, 2]])
    #expect(predictions[0].top[0].name == "Ankle boot")
    #expect(predictions[1].top[0].name == "T-shirt/top")
    let total = Float((0..<10).map { exp(Double($0)) }.reduce(0, +))
    #expect(abs(predictions[0].top[0].probability - Float(exp(9.0)) / total) < 1e-6)
    #expect(predictions[1].index == 1 && predictions[1].input == "x.npy")

    let digits = try Predictor(try TestModels.deployable(TestModels.convnext))
    #expect(try digits.topClasses(logits, k: 1, input: "x").first?.top.first?.name == "9")
    for k in [0, 11] {
      let message = errorMessage { _ = try digits.topClasses(logits, k: k, input: "x") }
      #expect(message == "--top-k: must be in 1...10 (the model's classes), got \(k)")
    }
  }

  @Test("logits are written as float32 .npy [N, classes] or JSON; other extensions are refused")
  func logitsFiles() throws {
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let logits = Tensor(shape: [2, 3], scalars: [1, -2, 3.5, 0, 0.25, -7])
    let npy = directory.appendingPathComponent("logits.npy")
    try LogitsWriter.write(logits, inputs: ["a[0]", "a[1]"], model: "m", to: npy)
    let array = try NumPyArray.read(contentsOf: npy)
    #expect(array.shape == [2, 3] && array.elements == .float32(logits.scalars))
    let json = directory.appendingPathComponent("logits.json")
    try LogitsWriter.write(logits, inputs: ["a[0]", "a[1]"], model: "m", to: json)
    let decoded = try JSONDecoder().decode(LogitsWriter.JSONLogits.self, from: Data(contentsOf: json))
    #expect(decoded == .init(model: "m", inputs: ["a[0]", "a[1]"], logits: [[1, -2, 3.5], [0, 0.25, -7]]))
    let message = errorMessage { try LogitsWriter.write(logits, inputs: [], model: "m", to: directory.appendingPathComponent("l.txt")) }
    #expect(message?.contains("--logits") == true && message?.contains(".npy") == true)
  }

  @Test("bad inputs give errors naming the input: missing, corrupt, wrong channels, too small, ambiguous, non-finite")
  func badInputs() throws {
    let deployable = try TestModels.deployable(TestModels.quadratic)
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    func write(_ name: String, _ data: Data) throws -> URL {
      let url = directory.appendingPathComponent(name)
      try data.write(to: url)
      return url
    }
    func message(_ url: URL, layout: InputLayout = .auto, model: DeployableModel? = nil) -> String {
      errorMessage { _ = try ImageInput.read(url, for: model ?? deployable, layout: layout) } ?? "no error"
    }
    let missing = directory.appendingPathComponent("missing.npy")
    #expect(message(missing) == "\(missing.path): no such file")

    let corruptNPY = try write("corrupt.npy", Data([0x93] + Array("NUMPY".utf8) + [1, 0, 4, 0] + Array("{{{{".utf8)))
    #expect(message(corruptNPY).contains("corrupt.npy: malformed .npy header"))
    let truncatedNPY = try write("short.npy", NumPyArray(shape: [2, 8, 8], elements: .uint8(.init(repeating: 1, count: 128))).encoded().dropLast(5))
    #expect(message(truncatedNPY).contains("short.npy: truncated .npy data"))
    let garbage = try write("garbage.bin", Data("hello world".utf8))
    #expect(message(garbage).contains("garbage.bin: neither a NumPy .npy file nor a valid IDX image file"))
    let labels = try write("labels.idx", IDX.encode(IDXArray(dimensions: [3], bytes: [1, 2, 3])))
    #expect(message(labels).contains("labels.idx: IDX images must be [N, H, W] or [N, H, W, C]"))

    let rgb = try write("rgb.npy", NumPyArray(shape: [1, 8, 8, 3], elements: .uint8(.init(repeating: 0, count: 192))).encoded())
    #expect(message(rgb).contains("rgb.npy: shape [1, 8, 8, 3] has 3 (NHWC) or 8 (NCHW) channels; quadratic-test takes 1"))
    #expect(message(rgb, layout: .nhwc).contains("rgb.npy: NHWC shape [1, 8, 8, 3] has 3 channels"))

    var colorConfig = TestModels.quadratic
    colorConfig.inputChannels = 3
    let colorModel = try TestModels.deployable(colorConfig)
    let gray = try write("gray.npy", NumPyArray(shape: [1, 8, 8], elements: .uint8(.init(repeating: 0, count: 64))).encoded())
    #expect(message(gray, model: colorModel).contains("gray.npy: shape [1, 8, 8] has one channel ([N, H, W]); quadratic-test takes 3-channel images"))

    let tiny = try write("tiny.npy", NumPyArray(shape: [1, 3, 3], elements: .uint8(.init(repeating: 0, count: 9))).encoded())
    #expect(message(tiny).contains("tiny.npy: images are 3×3, below quadratic-test's minimum of 4×4"))
    let empty = try write("empty.npy", NumPyArray(shape: [0, 8, 8], elements: .uint8([])).encoded())
    #expect(message(empty).contains("empty.npy: holds no images"))
    let ambiguous = try write("ambiguous.npy", NumPyArray(shape: [1, 1, 8, 1], elements: .uint8(.init(repeating: 0, count: 8))).encoded())
    #expect(message(ambiguous).contains("ambiguous.npy: shape [1, 1, 8, 1] is ambiguous"))
    let rank5 = try write("rank5.npy", NumPyArray(shape: [1, 1, 1, 8, 8], elements: .uint8(.init(repeating: 0, count: 64))).encoded())
    #expect(message(rank5).contains("rank5.npy: shape [1, 1, 1, 8, 8] must be [N, H, W]"))
    let nan = try write("nan.npy", NumPyArray(shape: [1, 8, 8], elements: .float32([.nan] + .init(repeating: 0, count: 63))).encoded())
    #expect(message(nan).contains("nan.npy: element 0 is nan; pixel values must be finite"))
  }

  @Test("a checkpoint without normalization cannot predict; batch sizes outside 1...65536 are refused")
  func predictorRequirements() throws {
    let model = try VisionModel(config: TestModels.quadratic)
    let bare = try DeployableModel(checkpoint: WeightsCheckpoint(model: model))
    let message = errorMessage { _ = try Predictor(bare) }
    #expect(message?.contains("records no input normalization") == true)
    let deployable = try TestModels.deployable(TestModels.quadratic)
    #expect(errorMessage { _ = try Predictor(deployable, batchSize: 0) } == "--batch-size: must be in 1...65536, got 0")
  }

  @Test("eval's renormalization maps a dataset's images to the checkpoint's statistics exactly")
  func renormalization() throws {
    let digits = try DatasetSplits.digits().test.subset(Array(0..<20))
    let saved = TestModels.normalization
    let renormalized = digits.renormalized(to: saved)
    #expect(renormalized.normalization == saved)
    let raw = digits.images.scalars.map { digits.normalization.denormalize($0) }
    let expected = raw.map { saved.normalize(raw: $0) }
    let difference = zip(renormalized.images.scalars, expected).map { abs($0 - $1) }.max()!
    #expect(difference < 1e-5)
    // The raw pixels are the digits' integers 0...16.
    #expect(raw.allSatisfy { abs($0 - $0.rounded()) < 1e-4 && $0 >= -1e-4 && $0 <= 16.0001 })
    #expect(digits.renormalized(to: digits.normalization).images.scalars == digits.images.scalars)
  }

  @Test("predict on a dataset file equals evaluation on the same images with the checkpoint's normalization")
  func predictMatchesEvaluation() throws {
    let deployable = try TestModels.deployable(TestModels.hybrid)
    let digits = try DatasetSplits.digits().test.subset(Array(0..<30))
    let raw = digits.images.scalars.map { digits.normalization.denormalize($0).rounded() }
    let directory = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let url = directory.appendingPathComponent("digits.npy")
    try NumPyArray(shape: [30, 8, 8], elements: .uint8(raw.map { UInt8($0) })).encoded().write(to: url)
    let predicted = try Predictor(deployable, batchSize: 7).logits(try ImageInput.read(url, for: deployable))
    let evaluated = GradientMode.withoutRecording {
      deployable.model(Variable(digits.renormalized(to: TestModels.normalization).images)).value
    }
    let difference = zip(predicted.scalars, evaluated.scalars).map { abs($0 - $1) }.max()!
    #expect(difference < 1e-4)
    #expect(predicted.argmaxAlongLastAxis() == evaluated.argmaxAlongLastAxis())
  }
}

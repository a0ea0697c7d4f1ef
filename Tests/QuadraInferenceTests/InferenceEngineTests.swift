import Foundation
import QuadraInference
import QuadraModels
import Testing

/// A model whose every parameter is random (LN affine, biases and layer scales included), so each
/// folding of the compiler changes the result if it is wrong.
private func randomizedModel(_ config: ModelConfig, seed: UInt64) throws -> VisionModel {
  let model = try VisionModel(config: config, seed: seed)
  var generator = RandomGenerator(seed: seed &+ 17)
  for (name, parameter) in model.namedParameters() {
    let tensor = parameter.variable.value
    let isScale = name.hasSuffix("gamma") || name.hasSuffix("gamma1") || name.hasSuffix("gamma2")
    let isNormWeight = name.hasSuffix(".weight") && tensor.rank == 1  // only LayerNorm weights are vectors
    for i in 0..<tensor.count {
      let u = Float(generator.next() % 10_000) / 10_000  // [0, 1)
      if isScale || isNormWeight {
        tensor.buffer.pointer[i] = 0.5 + u
      } else if name.hasSuffix(".bias") {
        tensor.buffer.pointer[i] = 0.2 * (u - 0.5)
      } else {
        tensor.buffer.pointer[i] += 0.05 * (u - 0.5)
      }
    }
  }
  model.setTraining(false)
  return model
}

private func randomImages(_ shape: [Int], seed: UInt64) -> Tensor {
  var generator = RandomGenerator(seed: seed)
  return Tensor.truncatedNormal(shape: shape, std: 1, using: &generator)
}

/// Largest |engine − tape| relative to the largest |tape logit|.
private func relativeError(_ model: VisionModel, _ engine: InferenceEngine, _ images: Tensor) throws -> Float {
  let expected = GradientMode.withoutRecording { model(Variable(images)).value.scalars }
  let actual = try engine.logits(images).scalars
  #expect(actual.count == expected.count)
  let scale = expected.map(abs).max() ?? 0
  #expect(scale > 0)
  return zip(actual, expected).map { abs($0 - $1) }.max()! / scale
}

private let hybrid = ModelConfig(
  name: "hybrid-test", inputChannels: 3, classCount: 7, stemPatchSize: 2, stemKernelSize: 5, depths: [1, 2, 1],
  widths: [12, 20, 36],
  mixers: [.quadratic(kernelSize: 3), .gnConv(order: 3, scale: 0.5), .depthwise(kernelSize: 5)], mlpRatio: 3,
  layerScaleInit: 1)

struct InferenceEngineTests {
  @Test(
    "engine logits equal the tape forward's (eval mode)",
    arguments: ["quadranet-28", "hornet-28", "convnext-28", "hybrid"], [1, 2])
  func matchesTape(model name: String, threads: Int) throws {
    let config = name == "hybrid" ? hybrid : try ModelRegistry.config(named: name)
    let context = try ComputeContext(threads: threads)
    try context.run {
      let model = try randomizedModel(config, seed: 3)
      let engine = try InferenceEngine(model: model)
      // Square and odd sizes (odd sizes drop the last row/column at each 2×2 downsampling), batch 1 and 3.
      for (batch, height, width) in [(1, 28, 28), (3, 28, 28), (2, 29, 33), (1, 31, 30)] {
        let images = randomImages([batch, height, width, config.inputChannels], seed: UInt64(batch * height + width))
        let error = try relativeError(model, engine, images)
        #expect(error <= 1e-4, "\(name), \(threads) thread(s), \(batch)×\(height)×\(width): relative error \(error)")
      }
    }
  }

  @Test("an ImageNet-size config (quadranet-t18 at 64², patchify stem 4) matches at batch 2")
  func largeConfig() throws {
    var config = try ModelRegistry.config(named: "quadranet-t18")
    config.depths = [1, 1, 2, 1]  // same widths and kernels, fewer blocks: keeps the test short
    config.classCount = 50
    let context = try ComputeContext(threads: 2)
    try context.run {
      let model = try randomizedModel(config, seed: 5)
      let engine = try InferenceEngine(model: model)
      let error = try relativeError(model, engine, randomImages([2, 64, 64, 3], seed: 9))
      #expect(error <= 1e-4, "relative error \(error)")
    }
  }

  @Test("the workspace is allocated once per batch size and charged to the context's tracker")
  func workspaceReuse() throws {
    let tracker = MemoryTracker()
    let context = try ComputeContext(threads: 2, memory: tracker)
    try context.run {
      let model = try randomizedModel(try ModelRegistry.config(named: "quadranet-28"), seed: 1)
      let engine = try InferenceEngine(model: model)
      let images = randomImages([4, 28, 28, 1], seed: 2)
      let before = tracker.liveBytes
      let first = try engine.logits(images)
      let workspace = engine.workspaceBytes
      #expect(workspace > 0)
      // The workspace (and the first result) are now live in this tracker.
      #expect(tracker.liveBytes >= before + workspace)
      let live = tracker.liveBytes
      let second = try engine.logits(images)
      #expect(engine.workspaceBytes == workspace)
      #expect(tracker.liveBytes == live + second.buffer.byteCount)
      #expect(first.scalars == second.scalars)
      // Another batch size gets its own workspace (the old one is released).
      _ = try engine.logits(randomImages([1, 28, 28, 1], seed: 3))
      #expect(engine.workspaceBytes < workspace)
    }
  }

  @Test("bad inputs throw errors that name the field and the allowed range")
  func badInputs() throws {
    let model = try randomizedModel(try ModelRegistry.config(named: "convnext-28"), seed: 1)
    let engine = try InferenceEngine(model: model)
    #expect(throws: InferenceError.self) { try engine.logits(Tensor(zeros: [1, 28, 28, 3])) }
    #expect(throws: InferenceError.self) { try engine.logits(Tensor(zeros: [1, 7, 28, 1])) }
    #expect(throws: InferenceError.self) { try engine.logits(Tensor(zeros: [0, 28, 28, 1])) }
    #expect(throws: InferenceError.self) { try engine.logits(Tensor(zeros: [28, 28, 1])) }
    do {
      _ = try engine.logits(Tensor(zeros: [1, 7, 28, 1]))
    } catch {
      #expect("\(error)".contains("height 7"))
      #expect("\(error)".contains("8...8192"))
    }
  }
}

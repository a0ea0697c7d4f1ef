import Testing

@testable import QuadraAutograd

@Suite(.serialized) struct VariableTests {
  @Test func gradientsAccumulateThroughSharedInputs() {
    let x = Variable(Tensor(shape: [3], scalars: [1, 2, 3]), requiresGrad: true)
    // y = x + x, so dy/dx = 2 per element.
    let y = Variable.record(x.value.adding(x.value), inputs: [x, x]) { g in [g, g] }
    y.backward()
    #expect(x.grad?.scalars == [2, 2, 2])
  }

  @Test func gradientsAccumulateAcrossBackwardPassesUntilZeroed() {
    let x = Variable(Tensor(shape: [2], scalars: [1, -2]), requiresGrad: true)
    for _ in 0..<3 { (x * x).sum().backward() }
    // d(Σx²)/dx = 2x, accumulated three times.
    #expect(x.grad?.scalars == [6, -12])
    x.zeroGradient()
    #expect(x.grad == nil)
    (x * 3).sum().backward()
    #expect(x.grad?.scalars == [3, 3])
  }

  @Test func diamondGraphVisitsEachNodeOnceInTapeOrder() {
    // z = (a·b) + (a·b)² with a shared intermediate: dz/da = b + 2(ab)b.
    let a = Variable(Tensor(shape: [1], scalars: [1.5]), requiresGrad: true)
    let b = Variable(Tensor(shape: [1], scalars: [-2]), requiresGrad: true)
    let ab = a * b
    let z = ab + ab * ab
    z.backward()
    #expect(abs(a.grad!.scalar - (-2 + 2 * (1.5 * -2) * -2)) < 1e-5)
    #expect(abs(b.grad!.scalar - (1.5 + 2 * (1.5 * -2) * 1.5)) < 1e-5)
  }

  @Test func inferenceModeRecordsNothing() {
    let x = Variable(Tensor(shape: [2], scalars: [1, 2]), requiresGrad: true)
    let y = GradientMode.withoutRecording {
      Variable.record(x.value.adding(x.value), inputs: [x]) { g in [g] }
    }
    #expect(y.node == nil)
  }

  @Test func inferenceModeFreesIntermediatesWhileRecordingKeepsThem() {
    let allocator = MemoryAllocator.shared
    let x = Variable(Tensor(shape: [1 << 16], repeating: 0.5), requiresGrad: true)
    func chain() -> Variable {
      var y = x
      for _ in 0..<8 { y = (y * y).gelu() }
      return y
    }
    let before = allocator.liveBytes
    let inference = GradientMode.withoutRecording { chain() }
    let inferenceBytes = allocator.liveBytes - before
    let recorded = chain()
    let recordedBytes = allocator.liveBytes - before - inferenceBytes
    // Inference keeps only its result (256 KiB); recording keeps every saved intermediate.
    #expect(inferenceBytes == 1 << 18)
    #expect(recordedBytes >= 8 * (1 << 18))
    recorded.backward()
    #expect(x.grad != nil)
    _ = inference
  }

  @Test func backwardReleasesSavedTensors() {
    let allocator = MemoryAllocator.shared
    let x = Variable(Tensor(shape: [1 << 16], repeating: 0.5), requiresGrad: true)
    let before = allocator.liveBytes
    do {
      var y = x
      for _ in 0..<6 { y = (y * y).gelu() }
      let loss = y.sum()
      loss.backward()
    }
    // After backward only x's gradient (256 KiB) remains.
    #expect(allocator.liveBytes - before == 1 << 18)
  }
}

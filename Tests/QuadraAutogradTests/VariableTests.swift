import Testing

@testable import QuadraAutograd

@Suite struct VariableTests {
  @Test func gradientsAccumulateThroughSharedInputs() throws {
    let x = Variable(Tensor(shape: [3], scalars: [1, 2, 3]), requiresGrad: true)
    // y = x + x, so dy/dx = 2 per element.
    let y = Variable.record(x.value.adding(x.value), inputs: [x, x]) { g in [g, g] }
    try y.backward(Tensor(shape: [3], repeating: 1))
    #expect(x.grad?.scalars == [2, 2, 2])
  }

  /// A folding pullback gets the gradient its first input already has from a later use and returns the
  /// sum, which replaces the pending gradient (not added to it a second time); a leaf input has none.
  @Test func foldingPullbackTakesThePendingGradientAndReplacesIt() throws {
    let x = Variable(Tensor(shape: [2], scalars: [1, 2]), requiresGrad: true)
    let h = x * 3  // recorded, so gradients of its uses are pending on its node
    nonisolated(unsafe) var received: [[Float]?] = []
    // f = 2h, recorded before h's other use, z = h², so f's pullback runs after z's: y = 2h + h².
    let f = Variable.record(h.value.adding(h.value), inputs: [h], foldingPullback: { g, pending in
      received.append(pending?.scalars)
      let twice = g.adding(g)
      return [pending.map { twice.adding($0) } ?? twice]
    })
    let y = f + h * h
    try y.sum().backward()
    // ∂y/∂h = 2 + 2h = [8, 14]; the pending part was 2h = [6, 12]; ∂y/∂x = 3·∂y/∂h.
    #expect(received == [[6, 12]])
    #expect(x.grad?.scalars == [24, 42])

    // On a leaf the pullback gets nil, and the leaf's gradient accumulates as usual.
    received = []
    x.zeroGradient()
    let g = Variable.record(x.value.adding(x.value), inputs: [x], foldingPullback: { g, pending in
      received.append(pending?.scalars)
      return [g.adding(g)]
    })
    try (g + x * x).sum().backward()
    #expect(received == [nil])
    #expect(x.grad?.scalars == [4, 6])  // 2 + 2x
  }

  @Test func gradientsAccumulateAcrossBackwardPassesUntilZeroed() throws {
    let x = Variable(Tensor(shape: [2], scalars: [1, -2]), requiresGrad: true)
    for _ in 0..<3 { try (x * x).sum().backward() }
    // d(Σx²)/dx = 2x, accumulated three times.
    #expect(x.grad?.scalars == [6, -12])
    x.zeroGradient()
    #expect(x.grad == nil)
    try (x * 3).sum().backward()
    #expect(x.grad?.scalars == [3, 3])
  }

  @Test func diamondGraphVisitsEachNodeOnceInTapeOrder() throws {
    // z = (a·b) + (a·b)² with a shared intermediate: dz/da = b + 2(ab)b.
    let a = Variable(Tensor(shape: [1], scalars: [1.5]), requiresGrad: true)
    let b = Variable(Tensor(shape: [1], scalars: [-2]), requiresGrad: true)
    let ab = a * b
    let z = ab + ab * ab
    try z.backward()
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

  @Test func inferenceModeFreesIntermediatesWhileRecordingKeepsThem() throws {
    let memory = MemoryTracker()
    let x = Variable(Tensor(shape: [1 << 16], repeating: 0.5), requiresGrad: true)
    func chain() -> Variable {
      var y = x
      for _ in 0..<8 { y = (y * y).gelu() }
      return y
    }
    let inference = memory.run { GradientMode.withoutRecording { chain() } }
    let inferenceBytes = memory.liveBytes
    let recorded = memory.run { chain() }
    let recordedBytes = memory.liveBytes - inferenceBytes
    // Inference keeps only its result (256 KiB); recording keeps every saved intermediate.
    #expect(inferenceBytes == 1 << 18)
    #expect(recordedBytes >= 8 * (1 << 18))
    try recorded.sum().backward()
    #expect(x.grad != nil)
    _ = inference
  }

  @Test func backwardReleasesSavedTensors() throws {
    let memory = MemoryTracker()
    let x = Variable(Tensor(shape: [1 << 16], repeating: 0.5), requiresGrad: true)
    try memory.run {
      var y = x
      for _ in 0..<6 { y = (y * y).gelu() }
      let loss = y.sum()
      try loss.backward()
    }
    // After backward only x's gradient (256 KiB) remains.
    #expect(memory.liveBytes == 1 << 18)
    #expect(memory.peakBytes > 6 * (1 << 18))
  }

  // MARK: Misuse fails loudly

  @Test func secondBackwardFromTheSameRootThrows() throws {
    let x = Variable(Tensor(shape: [2], scalars: [1, -2]), requiresGrad: true)
    let loss = (x * x).sum()
    try loss.backward()
    #expect(x.grad?.scalars == [2, -4])
    #expect(throws: AutogradError.self) { try loss.backward() }
    // Nothing was accumulated by the refused pass.
    #expect(x.grad?.scalars == [2, -4])
  }

  /// Two roots over one shared intermediate: the first pass releases it, so the second root,
  /// whose own nodes are intact, still cannot be differentiated and must say why.
  @Test func secondRootNeedingAReleasedSharedNodeThrows() throws {
    let x = Variable(Tensor(shape: [2], scalars: [3, 4]), requiresGrad: true)
    let shared = x * x
    let first = (shared * 2).sum()
    let second = (shared * 5).sum()
    try first.backward()
    #expect(x.grad?.scalars == [12, 16])
    let error = #expect(throws: AutogradError.self) { try second.backward() }
    #expect("\(error.map { "\($0)" } ?? "")".contains("second time"))
    #expect(x.grad?.scalars == [12, 16])
  }

  /// Roots that share only leaves (parameters) are independent graphs: both passes succeed.
  @Test func rootsSharingOnlyLeavesBothBackpropagate() throws {
    let x = Variable(Tensor(shape: [2], scalars: [3, 4]), requiresGrad: true)
    let first = (x * x).sum()
    let second = (x * 5).sum()
    try first.backward()
    try second.backward()
    #expect(x.grad?.scalars == [11, 13])
  }

  @Test func nonScalarOutputNeedsASeed() throws {
    let x = Variable(Tensor(shape: [3], scalars: [1, 2, 3]), requiresGrad: true)
    let y = x * x
    #expect(throws: AutogradError.implicitSeedForNonScalar(shape: [3])) { try y.backward() }
    #expect(x.grad == nil)
    #expect(throws: AutogradError.seedShapeMismatch(seed: [2], output: [3])) {
      try y.backward(Tensor(shape: [2], repeating: 1))
    }
    // The refused calls released nothing: the explicit seed still works.
    try y.backward(Tensor(shape: [3], scalars: [1, 0, 1]))
    #expect(x.grad?.scalars == [2, 0, 6])
  }

  /// Graphs recorded on many threads at once get unique tape positions, increasing within each thread.
  @Test func tapePositionsAreUniqueUnderConcurrentRecording() async {
    let tasks = 8, nodesPerTask = 500
    let positions = await withTaskGroup(of: [Int].self) { group in
      for _ in 0..<tasks {
        group.addTask {
          let leaf = Variable(Tensor(shape: [1], scalars: [1]), requiresGrad: true)
          return (0..<nodesPerTask).map { _ in
            Variable.record(leaf.value, inputs: [leaf]) { g in [g] }.node!.position
          }
        }
      }
      var all: [[Int]] = []
      for await positions in group { all.append(positions) }
      return all
    }
    for perTask in positions { #expect(perTask == perTask.sorted()) }
    let flat = positions.joined()
    #expect(flat.count == tasks * nodesPerTask)
    #expect(Set(flat).count == flat.count)
  }
}

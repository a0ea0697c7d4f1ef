import Testing

@testable import QuadraCore

/// The fused residual MLP's CPU paths against the reference backend's composition of unfused
/// primitives: outputs, saved tensors and every gradient, across block and chunk boundaries, on one
/// and two threads, fused and unfused (the path the CPU takes when the weights outgrow L2).
@Suite struct ResidualMLPTests {
  static func inputs(rows: Int, channels c: Int, hidden h: Int) -> (Tensor, ResidualMLPParameters, Tensor) {
    var generator = RandomGenerator(seed: 61)
    func uniform(_ shape: [Int], _ lower: Float = -1, _ upper: Float = 1) -> Tensor {
      Tensor.uniform(shape: shape, lower: lower, upper: upper, using: &generator)
    }
    let x = uniform([rows, c], 1, 3)
    let parameters = ResidualMLPParameters(
      normWeight: uniform([c], 0.5, 1.5), normBias: uniform([c]), expandWeight: uniform([h, c], -0.5, 0.5),
      expandBias: uniform([h]), projectWeight: uniform([c, h], -0.5, 0.5), projectBias: uniform([c]),
      scale: uniform([c]))
    return (x, parameters, uniform([rows, c]))
  }

  /// Output, the saved hidden and MLP output, ∂x and the seven parameter gradients.
  static func run(_ x: Tensor, _ p: ResidualMLPParameters, _ dy: Tensor) -> [Tensor] {
    let (y, saved) = x.residualMLP(parameters: p)
    let (dx, gradients) = x.residualMLPBackward(parameters: p, saved: saved, outputGradient: dy)
    return [y, saved.hidden, saved.mlpOutput, dx] + gradients.all
  }

  static func expectClose(_ a: [Tensor], _ b: [Tensor], _ label: String) {
    #expect(a.count == b.count)
    for (i, (x, y)) in zip(a, b).enumerated() {
      #expect(x.shape == y.shape, "\(label) #\(i)")
      let error = x.subtracting(y).maxAbs() / (1 + y.maxAbs())
      #expect(error < 2e-5, "\(label) #\(i): scaled error \(error)")
    }
  }

  /// 101 rows in blocks of 16 (7 blocks, the last short), C = 11 and H = 19 (vector tails), so the
  /// gradient sums cross blocks and chunks.
  @Test(arguments: [(16, true, 1), (16, true, 2), (64, true, 2), (16, false, 2)])
  func matchesTheReference(blockRows: Int, fuses: Bool, threads: Int) {
    let (x, p, dy) = Self.inputs(rows: 101, channels: 11, hidden: 19)
    let expected = Backends.withCurrent(ReferenceBackend()) { Self.run(x, p, dy) }
    let actual = ResidualMLPKernels.Shape.$blockRowsOverride.withValue(blockRows) {
      ResidualMLPKernels.Shape.$fusesOverride.withValue(fuses) {
        Parallel.withThreadCount(threads) { Self.run(x, p, dy) }
      }
    }
    Self.expectClose(actual, expected, "block \(blockRows), fused \(fuses), \(threads) threads")
  }

  /// The chunks depend on the shapes only, so one and two threads give the same bits.
  @Test func sameBitsOnAnyThreadCount() {
    let (x, p, dy) = Self.inputs(rows: 150, channels: 24, hidden: 40)
    let results = [1, 2].map { threads in
      ResidualMLPKernels.Shape.$blockRowsOverride.withValue(16) {
        Parallel.withThreadCount(threads) { Self.run(x, p, dy) }
      }
    }
    for (a, b) in zip(results[0], results[1]) { #expect(a.scalars == b.scalars) }
  }

  /// Known values: with W₁ = 0, b₁ = 0 the hidden layer is GELU(0) = 0, so o = b₂ and y = x + γ ⊙ b₂.
  @Test func zeroExpansionGivesTheScaledProjectionBias() {
    let (x, original, _) = Self.inputs(rows: 5, channels: 3, hidden: 4)
    var p = original
    p.expandWeight = Tensor(zeros: [4, 3])
    p.expandBias = Tensor(zeros: [4])
    p.projectBias = Tensor(shape: [3], scalars: [1, 2, 3])
    p.scale = Tensor(shape: [3], scalars: [0.5, -1, 2])
    let y = x.residualMLP(parameters: p).output
    for row in 0..<5 {
      for (j, shift) in [Float(0.5), -2, 6].enumerated() {
        #expect(abs(y.scalars[row * 3 + j] - (x.scalars[row * 3 + j] + shift)) < 1e-6)
      }
    }
  }

  /// The blocks fill L2 next to the weights; weights that outgrow half of L2 take the unfused path.
  @Test func blockingFollowsTheCache() {
    let small = ResidualMLPKernels.Shape(rows: 12544, channels: 40, hidden: 80, level2CacheBytes: 1 << 21)
    #expect(small.fuses)
    #expect(small.blockRows == ((1 << 21) - 4 * 80 * 40 * 4) / ((6 * 40 + 5 * 80) * 4))
    #expect(small.blocks == (12544 + small.blockRows - 1) / small.blockRows)
    #expect(small.block(small.blocks - 1).upperBound == 12544)
    let wide = ResidualMLPKernels.Shape(rows: 196, channels: 512, hidden: 2048, level2CacheBytes: 1 << 21)
    #expect(!wide.fuses)
    // W fits in half of L2 (1 MiB at C = 128, H = 512) but leaves room for only 78 rows per block.
    let thin = ResidualMLPKernels.Shape(rows: 12544, channels: 128, hidden: 512, level2CacheBytes: 1 << 21)
    #expect(!thin.fuses)
    let third = ResidualMLPKernels.Shape(rows: 3136, channels: 160, hidden: 320, level2CacheBytes: 1 << 21)
    #expect(third.fuses && third.blockRows >= ResidualMLPKernels.Shape.minimumBlockRows)
  }
}

import Testing

@testable import QuadraCore

/// The quadratic depthwise kernels with the block's LayerNorm fused into their row rings, against
/// LayerNorm then the plain kernels, at both channel-block widths, on the lane-width cases' shapes,
/// with the rows forced into 1–3 ranges (each pixel's statistics written by exactly one range, halo
/// rows normalized by two) and, at 16 lanes, both register paths of the 3×3 tiles.
@Suite struct NormalizedMixerTests {
  struct Problem {
    let x: Tensor, gamma: Tensor, beta: Tensor, dy: Tensor
    let w: (Tensor, Tensor, Tensor)
    let b: (Tensor, Tensor, Tensor)?

    init(_ n: Int, _ h: Int, _ wd: Int, _ c: Int, _ k: Int, bias: Bool, seed: UInt64) {
      var rng = RandomGenerator(seed: seed)
      // An offset and a spread per pixel, so that μ and σ differ from pixel to pixel.
      x = Tensor.uniform(shape: [n, h, wd, c], lower: 1, upper: 3, using: &rng)
      gamma = Tensor.uniform(shape: [c], lower: 0.5, upper: 1.5, using: &rng)
      beta = Tensor.uniform(shape: [c], lower: -0.5, upper: 0.5, using: &rng)
      dy = Tensor.normal(shape: [n, h, wd, c], using: &rng)
      let s: Float = 1 / Float(k)
      w = (
        Tensor.uniform(shape: [k, k, c], lower: -s, upper: s, using: &rng),
        Tensor.uniform(shape: [k, k, c], lower: -s, upper: s, using: &rng),
        Tensor.uniform(shape: [k, k, c], lower: -s, upper: s, using: &rng)
      )
      b = bias
        ? (Tensor.normal(shape: [c], using: &rng), Tensor.normal(shape: [c], using: &rng),
           Tensor.normal(shape: [c], using: &rng)) : nil
    }
  }

  /// `max |a − e| / (1 + max |e|)` ≤ `tolerance`.
  static func expectNear(_ a: Tensor, _ e: Tensor, _ label: String, tolerance: Float = 2e-5) {
    #expect(a.shape == e.shape, "\(label): shape")
    let error = a.subtracting(e).maxAbs() / (1 + e.maxAbs())
    #expect(error <= tolerance, "\(label): scaled error \(error)")
  }

  static func pointers(_ t: (Tensor, Tensor, Tensor)) -> QuadraticDepthwiseConvolution.Pointers {
    (UnsafePointer(t.0.buffer.pointer), UnsafePointer(t.1.buffer.pointer), UnsafePointer(t.2.buffer.pointer))
  }

  static func mutablePointers(_ t: (Tensor, Tensor, Tensor)) -> QuadraticDepthwiseConvolution.MutablePointers {
    (t.0.buffer.pointer, t.1.buffer.pointer, t.2.buffer.pointer)
  }

  static func triple(_ shape: [Int]) -> (Tensor, Tensor, Tensor) {
    (Tensor(uninitializedShape: shape), Tensor(uninitializedShape: shape), Tensor(uninitializedShape: shape))
  }

  /// Fused forward and backward over `chunks` forced row ranges against the composition.
  static func check(_ p: Problem, chunks: Int, label: String) {
    let (n, h, wd, c, k) = (p.x.shape[0], p.x.shape[1], p.x.shape[2], p.x.shape[3], p.w.0.shape[0])
    // The composition: LayerNorm, then the quadratic kernels on x̂; LayerNorm's backward of their ∂L/∂x̂.
    let (xhat, statistics) = p.x.layerNorm(weight: p.gamma, bias: p.beta, epsilon: 1e-6)
    let y = xhat.quadraticDepthwiseConv2D(weights: p.w, biases: p.b)
    let g = Tensor.quadraticDepthwiseConv2DBackward(input: xhat, weights: p.w, biases: p.b, outputGradient: p.dy)
    let ln = p.x.layerNormBackward(outputGradient: g.input!, weight: p.gamma, statistics: statistics)

    let shape = DepthwiseConvolution.Shape(batch: n, height: h, width: wd, channels: c, kernelSize: k, op: "test")
    let pixels = n * h * wd
    // Filled with NaN: every statistic must be written.
    let mean = Tensor(shape: [pixels], repeating: .nan), rstd = Tensor(shape: [pixels], repeating: .nan)
    let normalization = QuadraticDepthwiseConvolution.InputNormalization(
      weight: p.gamma.buffer.pointer, bias: p.beta.buffer.pointer, epsilon: 1e-6, mean: mean.buffer.pointer,
      inverseStandardDeviation: rstd.buffer.pointer)
    let output = Tensor(uninitializedShape: p.x.shape)
    QuadraticDepthwiseConvolution.forward(
      input: p.x.buffer.pointer, normalization: normalization, weights: pointers(p.w), biases: p.b.map(pointers),
      output: output.buffer.pointer, shape: shape, chunks: chunks)
    expectNear(output, y, label + " y")
    // The statistics come from the same function as the plain LayerNorm's: the same bits.
    #expect(mean.scalars == statistics.mean.scalars, "\(label): μ")
    #expect(rstd.scalars == statistics.inverseStandardDeviation.scalars, "\(label): σ⁻¹")

    let dx = Tensor(uninitializedShape: p.x.shape)
    let dGamma = Tensor(uninitializedShape: [c]), dBeta = Tensor(uninitializedShape: [c])
    let dw = triple([k, k, c])
    let db = p.b.map { _ in triple([c]) }
    QuadraticDepthwiseConvolution.backward(
      input: p.x.buffer.pointer, normalization: normalization, weights: pointers(p.w), biases: p.b.map(pointers),
      outputGradient: p.dy.buffer.pointer, inputGradient: dx.buffer.pointer, weightGradients: mutablePointers(dw),
      biasGradients: db.map(mutablePointers), normalizationGradients: (dGamma.buffer.pointer, dBeta.buffer.pointer),
      shape: shape, chunks: chunks)
    expectNear(dx, ln.input, label + " dx", tolerance: 1e-4)
    expectNear(dGamma, ln.weight, label + " dγ", tolerance: 1e-4)
    expectNear(dBeta, ln.bias, label + " dβ", tolerance: 1e-4)
    for (i, (actual, expected)) in zip([dw.0, dw.1, dw.2], [g.weights.0, g.weights.1, g.weights.2]).enumerated() {
      expectNear(actual, expected, label + " dW\(i)", tolerance: 1e-4)
    }
    if let db, let expected = g.biases {
      for (i, (actual, e)) in zip([db.0, db.1, db.2], [expected.0, expected.1, expected.2]).enumerated() {
        expectNear(actual, e, label + " db\(i)", tolerance: 1e-4)
      }
    }
  }

  @Test(arguments: DepthwiseLaneWidthTests.lanes, [1, 2, 3])
  func fusedMatchesLayerNormThenKernel(lanes: Int, chunks: Int) {
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      for sharing in lanes == 16 ? [false, true] : [false] {
        DepthwiseConvolution.$sharedInputTilesOverride.withValue(sharing) {
          for (index, (n, h, w, c, k)) in DepthwiseLaneWidthTests.cases.enumerated() where n * h >= chunks {
            let problem = Problem(n, h, w, c, k, bias: index % 3 != 1, seed: 1200 + UInt64(index))
            Self.check(
              problem, chunks: chunks,
              label: "N\(n) \(h)×\(w) C\(c) k\(k) lanes \(lanes) chunks \(chunks) shared \(sharing)")
          }
        }
      }
    }
  }

  /// An input-gradient addend (the residual path's gradient) is added as each row is written: the same
  /// bits as the plain backward followed by a separate sum, every other gradient unchanged, at both lane
  /// widths and over 1–3 row ranges; the reference backend's composition agrees.
  @Test(arguments: DepthwiseLaneWidthTests.lanes, [1, 3])
  func inputGradientAddendIsTheSameAsASeparateSum(lanes: Int, chunks: Int) {
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      for (index, (n, h, w, c, k)) in DepthwiseLaneWidthTests.cases.enumerated() where n * h >= chunks {
        let p = Problem(n, h, w, c, k, bias: index % 2 == 0, seed: 1400 + UInt64(index))
        var rng = RandomGenerator(seed: 1500 + UInt64(index))
        let addend = Tensor.normal(shape: p.x.shape, using: &rng)
        let normalization = LayerNormParameters(weight: p.gamma, bias: p.beta, epsilon: 1e-6)
        let (_, statistics) = p.x.normalizedQuadraticDepthwiseConv2D(
          normalization: normalization, weights: p.w, biases: p.b)
        func gradients(_ addend: Tensor?) -> [Tensor] {
          let g = Tensor.normalizedQuadraticDepthwiseConv2DBackward(
            input: p.x, normalization: normalization, statistics: statistics, weights: p.w, biases: p.b,
            outputGradient: p.dy, inputGradientAddend: addend)
          return [g.input, g.normalization.weight, g.normalization.bias, g.weights.0, g.weights.1, g.weights.2]
            + (g.biases.map { [$0.0, $0.1, $0.2] } ?? [])
        }
        let label = "N\(n) \(h)×\(w) C\(c) k\(k) lanes \(lanes) chunks \(chunks)"
        let (plain, folded) = (gradients(nil), gradients(addend))
        #expect(folded[0].scalars == plain[0].adding(addend).scalars, "\(label): ∂x")
        for i in 1..<plain.count { #expect(folded[i].scalars == plain[i].scalars, "\(label): gradient \(i)") }
        // The reference backend's composition (LayerNorm's backward, then a sum).
        let reference = Backends.withCurrent(ReferenceBackend()) { gradients(addend) }
        Self.expectNear(folded[0], reference[0], label + " ∂x against the reference", tolerance: 1e-4)
      }
    }
  }

  /// The public entry points (their own row ranges and thread counts) give the same bits on 1 and 2
  /// threads: the LayerNorm's ∂γ, ∂β are summed per shape-fixed range, in order.
  @Test func sameBitsOnOneAndTwoThreads() {
    let p = Problem(4, 14, 14, 40, 3, bias: true, seed: 1300)
    let normalization = LayerNormParameters(weight: p.gamma, bias: p.beta, epsilon: 1e-6)
    func run(threads: Int) -> [Tensor] {
      Parallel.withThreadCount(threads) {
        let (y, statistics) = p.x.normalizedQuadraticDepthwiseConv2D(
          normalization: normalization, weights: p.w, biases: p.b)
        let g = Tensor.normalizedQuadraticDepthwiseConv2DBackward(
          input: p.x, normalization: normalization, statistics: statistics, weights: p.w, biases: p.b,
          outputGradient: p.dy)
        return [y, g.input, g.normalization.weight, g.normalization.bias, g.weights.0, g.weights.1, g.weights.2]
      }
    }
    let one = run(threads: 1), two = run(threads: 2)
    for (i, (a, b)) in zip(one, two).enumerated() { #expect(a.scalars == b.scalars, "output \(i)") }
  }
}

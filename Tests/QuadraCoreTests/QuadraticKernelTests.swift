import Testing

@testable import QuadraCore

/// Plain Double references for the quadratic depthwise convolution.
enum QuadraticReference {
  /// `y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)` with the factors `a`, `b`.
  static func forward(
    x: Tensor, w: (Tensor, Tensor, Tensor), b: (Tensor, Tensor, Tensor)?
  ) -> (y: [Double], a: [Double], b: [Double]) {
    let a = ConvolutionReference.depthwise(x: x, w: w.0, b: b?.0)
    let bb = ConvolutionReference.depthwise(x: x, w: w.1, b: b?.1)
    let c = ConvolutionReference.depthwise(x: x, w: w.2, b: b?.2)
    return (a.indices.map { a[$0] * bb[$0] + c[$0] }, a, bb)
  }

  /// The chain rule through `a ⊙ b + c`: `g_a = dy ⊙ b`, `g_b = dy ⊙ a`, `g_c = dy`, each
  /// pushed through the depthwise reference backward; `dx` is their sum.
  static func backward(
    x: Tensor, w: (Tensor, Tensor, Tensor), b: (Tensor, Tensor, Tensor)?, dy: Tensor
  ) -> (dx: [Double], dw: [[Double]], db: [[Double]]) {
    let f = forward(x: x, w: w, b: b)
    let g = dy.scalars.map(Double.init)
    func tensor(_ values: [Double]) -> Tensor { Tensor(shape: x.shape, scalars: values.map { Float($0) }) }
    let ga = ConvolutionReference.depthwiseBackward(x: x, w: w.0, dy: tensor(g.indices.map { g[$0] * f.b[$0] }))
    let gb = ConvolutionReference.depthwiseBackward(x: x, w: w.1, dy: tensor(g.indices.map { g[$0] * f.a[$0] }))
    let gc = ConvolutionReference.depthwiseBackward(x: x, w: w.2, dy: dy)
    let dx = ga.dx.indices.map { ga.dx[$0] + gb.dx[$0] + gc.dx[$0] }
    return (dx, [ga.dw, gb.dw, gc.dw], [ga.db, gb.db, gc.db])
  }
}

@Suite(.serialized) struct QuadraticKernelTests {
  /// k = 3, 5, 7 × C = 1, 5, 8, 13, 24 (full and partial channel blocks), odd and even
  /// heights and widths (8-, 7-, 4-, 3-, 2- and 1-column tiles, overlapping last tiles), images
  /// smaller than the kernel, batches of 1...3.
  static let cases: [(n: Int, h: Int, w: Int, c: Int, k: Int)] = {
    var cases: [(Int, Int, Int, Int, Int)] = []
    let sizes = [(5, 11), (9, 3), (3, 7), (7, 13), (11, 5), (6, 9), (4, 14), (5, 2), (3, 1)]
    for (ki, k) in [3, 5, 7].enumerated() {
      for (ci, c) in [1, 5, 8, 13, 24].enumerated() {
        let (h, w) = sizes[(2 * ki + ci) % sizes.count]
        cases.append((1 + (ki + ci) % 3, h, w, c, k))
      }
    }
    return cases
  }()

  struct Problem {
    let x: Tensor, w: (Tensor, Tensor, Tensor), b: (Tensor, Tensor, Tensor), dy: Tensor
    let label: String

    init(_ n: Int, _ h: Int, _ width: Int, _ c: Int, _ k: Int, seed: UInt64) {
      var rng = RandomGenerator(seed: seed)
      x = Tensor.normal(shape: [n, h, width, c], using: &rng)
      // Scaled so a, b, c are O(1): products stay well conditioned for the tolerances.
      let scale = 1 / Float(k)
      w = (
        Tensor.normal(shape: [k, k, c], std: scale, using: &rng), Tensor.normal(shape: [k, k, c], std: scale, using: &rng),
        Tensor.normal(shape: [k, k, c], std: scale, using: &rng)
      )
      b = (
        Tensor.normal(shape: [c], using: &rng), Tensor.normal(shape: [c], using: &rng),
        Tensor.normal(shape: [c], using: &rng)
      )
      dy = Tensor.normal(shape: [n, h, width, c], using: &rng)
      label = "N\(n) \(h)×\(width) C\(c) k\(k)"
    }

    var shape: DepthwiseConvolution.Shape {
      DepthwiseConvolution.Shape(
        batch: x.shape[0], height: x.shape[1], width: x.shape[2], channels: x.shape[3], kernelSize: w.0.shape[0],
        op: "test")
    }

    /// The unfused composition of engine ops: three depthwise convolutions, a product and a sum.
    func unfusedForward(biases: Bool) -> Tensor {
      let a = x.depthwiseConv2D(weight: w.0, bias: biases ? b.0 : nil)
      let bb = x.depthwiseConv2D(weight: w.1, bias: biases ? b.1 : nil)
      let c = x.depthwiseConv2D(weight: w.2, bias: biases ? b.2 : nil)
      return a.multiplying(bb).adding(c)
    }

    /// The unfused backward: the factors kept from the forward pass, three depthwise backward calls.
    func unfusedBackward(biases: Bool) -> (dx: Tensor, dw: [Tensor], db: [Tensor]) {
      let a = x.depthwiseConv2D(weight: w.0, bias: biases ? b.0 : nil)
      let bb = x.depthwiseConv2D(weight: w.1, bias: biases ? b.1 : nil)
      let ga = Tensor.depthwiseConv2DBackward(
        input: x, weight: w.0, outputGradient: dy.multiplying(bb), needsInputGradient: true, hasBias: true)
      let gb = Tensor.depthwiseConv2DBackward(
        input: x, weight: w.1, outputGradient: dy.multiplying(a), needsInputGradient: true, hasBias: true)
      let gc = Tensor.depthwiseConv2DBackward(
        input: x, weight: w.2, outputGradient: dy, needsInputGradient: true, hasBias: true)
      return (ga.input!.adding(gb.input!).adding(gc.input!), [ga.weight, gb.weight, gc.weight], [ga.bias!, gb.bias!, gc.bias!])
    }
  }

  @Test(arguments: [1, 2])
  func forwardMatchesReferenceAndUnfused(threads: Int) {
    for (index, (n, h, w, c, k)) in Self.cases.enumerated() {
      let p = Problem(n, h, w, c, k, seed: 100 + UInt64(index))
      Parallel.withThreadCount(threads) {
        for biases in [true, false] {
          let label = p.label + " threads \(threads) biases \(biases)"
          let y = p.x.quadraticDepthwiseConv2D(weights: p.w, biases: biases ? p.b : nil)
          expectClose(y, QuadraticReference.forward(x: p.x, w: p.w, b: biases ? p.b : nil).y, label)
          #expect(maxDifference(y, p.unfusedForward(biases: biases)) < 1e-4, "\(label) vs unfused")
        }
      }
    }
  }

  @Test(arguments: [1, 2])
  func backwardMatchesReferenceAndUnfused(threads: Int) {
    for (index, (n, h, w, c, k)) in Self.cases.enumerated() {
      let p = Problem(n, h, w, c, k, seed: 200 + UInt64(index))
      let expected = QuadraticReference.backward(x: p.x, w: p.w, b: p.b, dy: p.dy)
      let unfused = p.unfusedBackward(biases: true)
      let label = p.label + " threads \(threads)"
      let g = Parallel.withThreadCount(threads) {
        Tensor.quadraticDepthwiseConv2DBackward(input: p.x, weights: p.w, biases: p.b, outputGradient: p.dy)
      }
      expectClose(g.input, expected.dx, label + " dx")
      let dw = [g.weights.0, g.weights.1, g.weights.2]
      let db = g.biases.map { [$0.0, $0.1, $0.2] } ?? []
      #expect(db.count == 3, "\(label): bias gradients")
      for i in 0..<3 {
        expectClose(dw[i], expected.dw[i], label + " dW\(i)")
        #expect(maxDifference(dw[i], unfused.dw[i]) < 1e-3 * (1 + unfused.dw[i].maxAbs()), "\(label) dW\(i) vs unfused")
        if i < db.count {
          expectClose(db[i], expected.db[i], label + " db\(i)")
          #expect(maxDifference(db[i], unfused.db[i]) < 1e-3 * (1 + unfused.db[i].maxAbs()), "\(label) db\(i) vs unfused")
        }
      }
      #expect(maxDifference(g.input!, unfused.dx) < 1e-3 * (1 + unfused.dx.maxAbs()), "\(label) dx vs unfused")
    }
  }

  /// Without biases (a, b recomputed without them) and without the input gradient.
  @Test func backwardWithoutBiasesOrInputGradient() {
    for (index, (n, h, w, c, k)) in Self.cases.enumerated() where index % 2 == 0 {
      let p = Problem(n, h, w, c, k, seed: 300 + UInt64(index))
      let expected = QuadraticReference.backward(x: p.x, w: p.w, b: nil, dy: p.dy)
      let g = Tensor.quadraticDepthwiseConv2DBackward(
        input: p.x, weights: p.w, biases: nil, outputGradient: p.dy, needsInputGradient: false)
      #expect(g.input == nil && g.biases == nil, "\(p.label)")
      expectClose(g.weights.0, expected.dw[0], p.label + " dW0")
      expectClose(g.weights.1, expected.dw[1], p.label + " dW1")
      expectClose(g.weights.2, expected.dw[2], p.label + " dW2")
    }
  }

  /// Row ranges forced to several chunks on small images (one thread runs them in turn), so
  /// ranges start and end inside images and across image boundaries: the recomputed halo rows
  /// and the fixed-order reduction of the partials must give the single-range result.
  @Test(arguments: [2, 3, 5, 8])
  func chunkedRangesMatchOneRange(chunks: Int) {
    for (n, h, w, c, k) in [(2, 9, 10, 13, 7), (3, 5, 6, 8, 5), (2, 7, 3, 5, 3), (1, 16, 9, 24, 7)] {
      let p = Problem(n, h, w, c, k, seed: 400 + UInt64(chunks))
      let s = p.shape
      let label = p.label + " chunks \(chunks)"
      func run(_ chunks: Int) -> [Tensor] {
        let y = Tensor(uninitializedShape: p.x.shape)
        let dx = Tensor(uninitializedShape: p.x.shape)
        let dw = (0..<3).map { _ in Tensor(uninitializedShape: p.w.0.shape) }
        let db = (0..<3).map { _ in Tensor(uninitializedShape: [c]) }
        let weights = (UnsafePointer(p.w.0.buffer.pointer), UnsafePointer(p.w.1.buffer.pointer), UnsafePointer(p.w.2.buffer.pointer))
        let biases = (UnsafePointer(p.b.0.buffer.pointer), UnsafePointer(p.b.1.buffer.pointer), UnsafePointer(p.b.2.buffer.pointer))
        QuadraticDepthwiseConvolution.forward(
          input: p.x.buffer.pointer, weights: weights, biases: biases, output: y.buffer.pointer, shape: s, chunks: chunks)
        QuadraticDepthwiseConvolution.backward(
          input: p.x.buffer.pointer, weights: weights, biases: biases, outputGradient: p.dy.buffer.pointer,
          inputGradient: dx.buffer.pointer,
          weightGradients: (dw[0].buffer.pointer, dw[1].buffer.pointer, dw[2].buffer.pointer),
          biasGradients: (db[0].buffer.pointer, db[1].buffer.pointer, db[2].buffer.pointer), shape: s, chunks: chunks)
        return [y, dx] + dw + db
      }
      let expected = QuadraticReference.backward(x: p.x, w: p.w, b: p.b, dy: p.dy)
      let split = run(chunks)
      let whole = run(1)
      expectClose(split[0], QuadraticReference.forward(x: p.x, w: p.w, b: p.b).y, label + " y")
      expectClose(split[1], expected.dx, label + " dx")
      for i in 0..<3 {
        expectClose(split[2 + i], expected.dw[i], label + " dW\(i)")
        expectClose(split[5 + i], expected.db[i], label + " db\(i)")
      }
      // The forward and the input gradient do not depend on the split at all.
      #expect(maxDifference(split[0], whole[0]) == 0, "\(label) y")
      #expect(maxDifference(split[1], whole[1]) == 0, "\(label) dx")
    }
  }

  /// The quadranet-t stage-4 shape scaled down, with two threads taking real row ranges.
  @Test func largerImageWithTwoThreads() {
    let p = Problem(2, 15, 17, 24, 7, seed: 500)
    let expected = QuadraticReference.backward(x: p.x, w: p.w, b: p.b, dy: p.dy)
    let forward = QuadraticReference.forward(x: p.x, w: p.w, b: p.b).y
    for threads in [1, 2] {
      Parallel.withThreadCount(threads) {
        expectClose(p.x.quadraticDepthwiseConv2D(weights: p.w, biases: p.b), forward, "y threads \(threads)")
        let g = Tensor.quadraticDepthwiseConv2DBackward(input: p.x, weights: p.w, biases: p.b, outputGradient: p.dy)
        expectClose(g.input, expected.dx, "dx threads \(threads)")
        expectClose(g.weights.0, expected.dw[0], "dW0 threads \(threads)")
        expectClose(g.weights.2, expected.dw[2], "dW2 threads \(threads)")
        expectClose(g.biases?.1, expected.db[1], "db1 threads \(threads)")
      }
    }
  }

  /// Scratch (packed weights, rings, partials) is released: only the results stay live.
  @Test func onlyResultsStayLive() {
    let p = Problem(2, 9, 11, 13, 7, seed: 600)
    let memory = MemoryTracker()
    let (y, g) = memory.run {
      let y = p.x.quadraticDepthwiseConv2D(weights: p.w, biases: p.b)
      return (y, Tensor.quadraticDepthwiseConv2DBackward(input: p.x, weights: p.w, biases: p.b, outputGradient: y))
    }
    #expect(memory.liveBytes == (2 * p.x.count + 3 * p.w.0.count + 3 * 13) * 4)
    withExtendedLifetime((y, g)) {}
  }

  @Test func emptyBatch() {
    let p = Problem(1, 4, 5, 3, 3, seed: 700)
    let x = Tensor(zeros: [0, 4, 5, 3])
    #expect(x.quadraticDepthwiseConv2D(weights: p.w, biases: p.b).shape == [0, 4, 5, 3])
    let g = Tensor.quadraticDepthwiseConv2DBackward(input: x, weights: p.w, biases: p.b, outputGradient: x)
    #expect(g.input?.shape == [0, 4, 5, 3])
    #expect(g.weights.1.scalars.allSatisfy { $0 == 0 } && g.biases?.2.scalars.allSatisfy { $0 == 0 } == true)
  }

  @Test func mismatchedWeightsTrap() async {
    await #expect(processExitsWith: .failure) {
      let x = Tensor(zeros: [1, 4, 4, 3])
      let w = Tensor(zeros: [3, 3, 3])
      _ = x.quadraticDepthwiseConv2D(weights: (w, w, Tensor(zeros: [5, 5, 3])), biases: nil)
    }
    await #expect(processExitsWith: .failure) {
      let x = Tensor(zeros: [1, 4, 4, 3])
      let w = Tensor(zeros: [3, 3, 3])
      let b = Tensor(zeros: [3])
      _ = x.quadraticDepthwiseConv2D(weights: (w, w, w), biases: (b, b, Tensor(zeros: [4])))
    }
  }

  // MARK: Linear and dense convolution

  @Test func quadraticLinearMatchesComposition() {
    var rng = RandomGenerator(seed: 800)
    let x = Tensor.normal(shape: [2, 5, 11], using: &rng)
    let w = (0..<3).map { _ in Tensor.normal(shape: [7, 11], std: 0.3, using: &rng) }
    let b = (0..<3).map { _ in Tensor.normal(shape: [7], using: &rng) }
    let dy = Tensor.normal(shape: [2, 5, 7], using: &rng)
    let ws = (w[0], w[1], w[2]), bs = (b[0], b[1], b[2])
    let a = x.linear(weight: w[0], bias: b[0]), bb = x.linear(weight: w[1], bias: b[1])
    let expected = a.multiplying(bb).adding(x.linear(weight: w[2], bias: b[2]))
    #expect(maxDifference(x.quadraticLinear(weights: ws, biases: bs), expected) < 1e-4)
    let g = Tensor.quadraticLinearBackward(input: x, weights: ws, biases: bs, outputGradient: dy)
    let ga = Tensor.linearBackward(input: x, weight: w[0], outputGradient: dy.multiplying(bb), hasBias: true)
    let gb = Tensor.linearBackward(input: x, weight: w[1], outputGradient: dy.multiplying(a), hasBias: true)
    let gc = Tensor.linearBackward(input: x, weight: w[2], outputGradient: dy, hasBias: true)
    #expect(maxDifference(g.input!, ga.input!.adding(gb.input!).adding(gc.input!)) < 1e-4)
    #expect(maxDifference(g.weights.0, ga.weight) < 1e-4 && maxDifference(g.weights.1, gb.weight) < 1e-4)
    #expect(maxDifference(g.weights.2, gc.weight) < 1e-4)
    #expect(maxDifference(g.biases!.0, ga.bias!) < 1e-4 && maxDifference(g.biases!.2, gc.bias!) < 1e-4)
  }

  @Test func quadraticConv2DMatchesComposition() {
    var rng = RandomGenerator(seed: 801)
    let x = Tensor.normal(shape: [2, 7, 6, 3], using: &rng)
    let w = (0..<3).map { _ in Tensor.normal(shape: [5, 3, 3, 3], std: 0.3, using: &rng) }
    let ws = (w[0], w[1], w[2])
    let (stride, padding) = ((2, 1), (1, 1))
    let a = x.conv2D(weight: w[0], bias: nil, stride: stride, padding: padding)
    let bb = x.conv2D(weight: w[1], bias: nil, stride: stride, padding: padding)
    let expected = a.multiplying(bb).adding(x.conv2D(weight: w[2], bias: nil, stride: stride, padding: padding))
    let y = x.quadraticConv2D(weights: ws, biases: nil, stride: stride, padding: padding)
    #expect(maxDifference(y, expected) < 1e-4)
    let dy = Tensor.normal(shape: y.shape, using: &rng)
    let g = Tensor.quadraticConv2DBackward(
      input: x, weights: ws, biases: nil, outputGradient: dy, stride: stride, padding: padding)
    func single(_ i: Int, _ gradient: Tensor) -> (input: Tensor?, weight: Tensor, bias: Tensor?) {
      Tensor.conv2DBackward(
        input: x, weight: w[i], outputGradient: gradient, stride: stride, padding: padding,
        needsInputGradient: true, hasBias: false)
    }
    let ga = single(0, dy.multiplying(bb)), gb = single(1, dy.multiplying(a)), gc = single(2, dy)
    #expect(g.biases == nil)
    #expect(maxDifference(g.input!, ga.input!.adding(gb.input!).adding(gc.input!)) < 1e-4)
    #expect(maxDifference(g.weights.0, ga.weight) < 1e-4 && maxDifference(g.weights.1, gb.weight) < 1e-4)
    #expect(maxDifference(g.weights.2, gc.weight) < 1e-4)
  }
}

import Testing

@testable import QuadraCore

/// Plain Double reference loops for the convolution kernels.
enum ConvolutionReference {
  /// Depthwise, stride 1, "same" zero padding; x `[N, H, W, C]`, w `[k, k, C]`.
  static func depthwise(x: Tensor, w: Tensor, b: Tensor?) -> [Double] {
    let (N, H, W, C, k) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0])
    let p = k / 2, xs = x.scalars, ws = w.scalars, bs = b?.scalars
    var y = [Double](repeating: 0, count: N * H * W * C)
    for n in 0..<N {
      for h in 0..<H {
        for wo in 0..<W {
          for c in 0..<C {
            var sum = bs.map { Double($0[c]) } ?? 0
            for i in 0..<k {
              for j in 0..<k {
                let ih = h + i - p, iw = wo + j - p
                if ih < 0 || ih >= H || iw < 0 || iw >= W { continue }
                sum += Double(xs[((n * H + ih) * W + iw) * C + c]) * Double(ws[(i * k + j) * C + c])
              }
            }
            y[((n * H + h) * W + wo) * C + c] = sum
          }
        }
      }
    }
    return y
  }

  /// Gradients of `depthwise` by scattering every product back (the chain rule written out).
  static func depthwiseBackward(x: Tensor, w: Tensor, dy: Tensor) -> (dx: [Double], dw: [Double], db: [Double]) {
    let (N, H, W, C, k) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0])
    let p = k / 2, xs = x.scalars, ws = w.scalars, gs = dy.scalars
    var dx = [Double](repeating: 0, count: x.count)
    var dw = [Double](repeating: 0, count: w.count)
    var db = [Double](repeating: 0, count: C)
    for n in 0..<N {
      for h in 0..<H {
        for wo in 0..<W {
          for c in 0..<C {
            let g = Double(gs[((n * H + h) * W + wo) * C + c])
            db[c] += g
            for i in 0..<k {
              for j in 0..<k {
                let ih = h + i - p, iw = wo + j - p
                if ih < 0 || ih >= H || iw < 0 || iw >= W { continue }
                let xi = ((n * H + ih) * W + iw) * C + c, wi = (i * k + j) * C + c
                dx[xi] += g * Double(ws[wi])
                dw[wi] += g * Double(xs[xi])
              }
            }
          }
        }
      }
    }
    return (dx, dw, db)
  }

  struct Dense {
    let N: Int, H: Int, W: Int, I: Int, O: Int, KH: Int, KW: Int, sh: Int, sw: Int, ph: Int, pw: Int
    var OH: Int { (H + 2 * ph - KH) / sh + 1 }
    var OW: Int { (W + 2 * pw - KW) / sw + 1 }

    /// Calls `body(xIndex, wIndex, yIndex)` for every product term of the convolution.
    func forEachTerm(_ body: (Int, Int, Int) -> Void) {
      for n in 0..<N {
        for oh in 0..<OH {
          for ow in 0..<OW {
            for o in 0..<O {
              let yi = ((n * OH + oh) * OW + ow) * O + o
              for i in 0..<KH {
                for j in 0..<KW {
                  let ih = oh * sh + i - ph, iw = ow * sw + j - pw
                  if ih < 0 || ih >= H || iw < 0 || iw >= W { continue }
                  for c in 0..<I {
                    body(((n * H + ih) * W + iw) * I + c, ((o * KH + i) * KW + j) * I + c, yi)
                  }
                }
              }
            }
          }
        }
      }
    }

    func forward(x: Tensor, w: Tensor, b: Tensor?) -> [Double] {
      let xs = x.scalars, ws = w.scalars
      var y = [Double](repeating: 0, count: N * OH * OW * O)
      if let bs = b?.scalars {
        for i in y.indices { y[i] = Double(bs[i % O]) }
      }
      forEachTerm { xi, wi, yi in y[yi] += Double(xs[xi]) * Double(ws[wi]) }
      return y
    }

    func backward(x: Tensor, w: Tensor, dy: Tensor) -> (dx: [Double], dw: [Double], db: [Double]) {
      let xs = x.scalars, ws = w.scalars, gs = dy.scalars
      var dx = [Double](repeating: 0, count: x.count)
      var dw = [Double](repeating: 0, count: w.count)
      var db = [Double](repeating: 0, count: O)
      for i in gs.indices { db[i % O] += Double(gs[i]) }
      forEachTerm { xi, wi, yi in
        dx[xi] += Double(gs[yi]) * Double(ws[wi])
        dw[wi] += Double(gs[yi]) * Double(xs[xi])
      }
      return (dx, dw, db)
    }
  }
}

/// Expects `actual` to match `expected` elementwise within `tolerance · (1 + |expected|)`.
func expectClose(
  _ actual: Tensor?, _ expected: [Double], tolerance: Double = 1e-4, _ label: String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  guard let actual else {
    Issue.record("\(label): missing result", sourceLocation: sourceLocation)
    return
  }
  #expect(actual.count == expected.count, "\(label): count", sourceLocation: sourceLocation)
  guard actual.count == expected.count else { return }
  var worst = 0.0, worstIndex = 0
  for (i, value) in actual.scalars.enumerated() {
    let error = abs(Double(value) - expected[i]) / (1 + abs(expected[i]))
    if !(error <= worst) {
      worst = error
      worstIndex = i
    }
  }
  #expect(
    worst <= tolerance,
    "\(label): relative error \(worst) at \(worstIndex) (got \(actual.scalars[worstIndex]), want \(expected[worstIndex]))",
    sourceLocation: sourceLocation)
}

@Suite(.serialized) struct ConvolutionTests {
  // MARK: Depthwise

  /// Kernel sizes × channel counts that exercise the SIMD8, SIMD4 and scalar channel paths,
  /// widths below 4, below 8 and not a multiple of 8 (overlapping column tiles), images
  /// smaller than the kernel, and batches of 1...3.
  static let depthwiseCases: [(n: Int, h: Int, w: Int, c: Int, k: Int)] = {
    var cases: [(Int, Int, Int, Int, Int)] = []
    let sizes = [(5, 11), (9, 3), (3, 7), (7, 13), (1, 19)]
    for (ki, k) in [1, 3, 5, 7].enumerated() {
      for (ci, c) in [1, 3, 8, 13, 20].enumerated() {
        let (h, w) = sizes[(ki + ci) % sizes.count]
        cases.append((1 + (ki + 2 * ci) % 3, h, w, c, k))
      }
    }
    return cases
  }()

  @Test(arguments: [1, 2])
  func depthwiseForwardMatchesReference(threads: Int) {
    var rng = RandomGenerator(seed: 11)
    for (n, h, w, c, k) in Self.depthwiseCases {
      let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
      let weight = Tensor.normal(shape: [k, k, c], using: &rng)
      let bias = Tensor.normal(shape: [c], using: &rng)
      let label = "N\(n) \(h)×\(w) C\(c) k\(k) threads \(threads)"
      Parallel.withThreadCount(threads) {
        expectClose(x.depthwiseConv2D(weight: weight, bias: bias), ConvolutionReference.depthwise(x: x, w: weight, b: bias), label)
        expectClose(x.depthwiseConv2D(weight: weight, bias: nil), ConvolutionReference.depthwise(x: x, w: weight, b: nil), label)
      }
    }
  }

  @Test(arguments: [1, 2])
  func depthwiseBackwardMatchesReference(threads: Int) {
    var rng = RandomGenerator(seed: 12)
    for (n, h, w, c, k) in Self.depthwiseCases {
      let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
      let weight = Tensor.normal(shape: [k, k, c], using: &rng)
      let dy = Tensor.normal(shape: [n, h, w, c], using: &rng)
      let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
      let label = "N\(n) \(h)×\(w) C\(c) k\(k) threads \(threads)"
      let grads = Parallel.withThreadCount(threads) {
        Tensor.depthwiseConv2DBackward(
          input: x, weight: weight, outputGradient: dy, needsInputGradient: true, hasBias: true)
      }
      expectClose(grads.input, expected.dx, label + " dx")
      expectClose(grads.weight, expected.dw, label + " dW")
      expectClose(grads.bias, expected.db, label + " db")
      let weightOnly = Tensor.depthwiseConv2DBackward(
        input: x, weight: weight, outputGradient: dy, needsInputGradient: false, hasBias: false)
      #expect(weightOnly.input == nil && weightOnly.bias == nil)
      expectClose(weightOnly.weight, expected.dw, label + " dW only")
    }
  }

  /// Enough rows that two threads each run several rows with their own padded-row ring.
  @Test func depthwiseLargerImageWithThreads() {
    var rng = RandomGenerator(seed: 13)
    let x = Tensor.normal(shape: [2, 17, 21, 24], using: &rng)
    let weight = Tensor.normal(shape: [7, 7, 24], using: &rng)
    let bias = Tensor.normal(shape: [24], using: &rng)
    let dy = Tensor.normal(shape: x.shape, using: &rng)
    let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
    for threads in [1, 2] {
      Parallel.withThreadCount(threads) {
        expectClose(x.depthwiseConv2D(weight: weight, bias: bias), ConvolutionReference.depthwise(x: x, w: weight, b: bias), "y")
        let grads = Tensor.depthwiseConv2DBackward(
          input: x, weight: weight, outputGradient: dy, needsInputGradient: true, hasBias: true)
        expectClose(grads.input, expected.dx, "dx")
        expectClose(grads.weight, expected.dw, "dW")
        expectClose(grads.bias, expected.db, "db")
      }
    }
  }

  // MARK: Dense

  /// (N, H, W, I, O, kh, kw, sh, sw, ph, pw): the 4×4/4 stem, 2×2/2 downsampling, a 1×1
  /// pointwise layer, padded 3×3 with stride 1 and 2, rectangular kernels and strides,
  /// padding 3, and sizes that leave pixels uncovered on the right/bottom.
  static let denseCases: [ConvolutionReference.Dense] = [
    .init(N: 2, H: 8, W: 12, I: 3, O: 5, KH: 4, KW: 4, sh: 4, sw: 4, ph: 0, pw: 0),
    .init(N: 3, H: 6, W: 10, I: 7, O: 9, KH: 2, KW: 2, sh: 2, sw: 2, ph: 0, pw: 0),
    .init(N: 2, H: 5, W: 7, I: 11, O: 13, KH: 1, KW: 1, sh: 1, sw: 1, ph: 0, pw: 0),
    .init(N: 1, H: 7, W: 9, I: 5, O: 3, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1),
    .init(N: 2, H: 9, W: 7, I: 3, O: 7, KH: 3, KW: 3, sh: 2, sw: 2, ph: 1, pw: 1),
    .init(N: 3, H: 7, W: 6, I: 5, O: 5, KH: 4, KW: 2, sh: 2, sw: 1, ph: 3, pw: 1),
    .init(N: 1, H: 11, W: 13, I: 1, O: 3, KH: 3, KW: 4, sh: 4, sw: 2, ph: 0, pw: 3),
    .init(N: 2, H: 5, W: 5, I: 9, O: 1, KH: 1, KW: 3, sh: 2, sw: 4, ph: 1, pw: 0),
    .init(N: 2, H: 3, W: 4, I: 3, O: 5, KH: 4, KW: 4, sh: 1, sw: 1, ph: 3, pw: 3),
    // Single input channel, O a multiple of 8: the direct path (a 3×3 stem, a 2×2 patchify stem, padding
    // wide enough that a whole output row sees only padding, uneven strides).
    .init(N: 2, H: 9, W: 7, I: 1, O: 16, KH: 3, KW: 3, sh: 1, sw: 1, ph: 1, pw: 1),
    .init(N: 3, H: 8, W: 8, I: 1, O: 8, KH: 2, KW: 2, sh: 2, sw: 2, ph: 0, pw: 0),
    .init(N: 2, H: 4, W: 5, I: 1, O: 24, KH: 3, KW: 2, sh: 2, sw: 1, ph: 3, pw: 1),
    .init(N: 1, H: 6, W: 11, I: 1, O: 8, KH: 4, KW: 3, sh: 2, sw: 3, ph: 2, pw: 2),
  ]

  /// The single-channel direct path agrees with im2col + GEMM at a stem's size, on two threads.
  @Test(arguments: [([8, 28, 28, 1], [16, 3, 3, 1], 1, 1), ([8, 28, 28, 1], [40, 2, 2, 1], 2, 0)])
  func singleChannelDirectPathMatchesIm2col(shapes: ([Int], [Int], Int, Int)) {
    let (xShape, wShape, stride, padding) = shapes
    var rng = RandomGenerator(seed: 23)
    let x = Tensor.normal(shape: xShape, using: &rng)
    let weight = Tensor.normal(shape: wShape, using: &rng)
    let bias = Tensor.normal(shape: [wShape[0]], using: &rng)
    Parallel.withThreadCount(2) {
      let geometry = Convolution2D.Geometry(
        batch: xShape[0], height: xShape[1], width: xShape[2], inputChannels: 1, outputChannels: wShape[0],
        kernelHeight: wShape[1], kernelWidth: wShape[2], stride: (stride, stride), padding: (padding, padding))
      #expect(Convolution2D.isSingleChannel(geometry))
      let dy = Tensor.normal(shape: geometry.outputShape, using: &rng)
      func run() -> (Tensor, Tensor, Tensor) {
        let y = x.conv2D(weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding))
        let grads = Tensor.conv2DBackward(
          input: x, weight: weight, outputGradient: dy, stride: (stride, stride), padding: (padding, padding),
          needsInputGradient: false, hasBias: true)
        return (y, grads.weight, grads.bias!)
      }
      let direct = run()
      let im2col = Convolution2D.$singleChannelDisabled.withValue(true) { run() }
      for (a, b, name) in [(direct.0, im2col.0, "y"), (direct.1, im2col.1, "dW"), (direct.2, im2col.2, "db")] {
        let scale = b.scalars.map { Swift.abs($0) }.max() ?? 1
        let worst = zip(a.scalars, b.scalars).map { Swift.abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * Swift.max(1, scale), "\(name): \(worst)")
      }
    }
  }

  @Test(arguments: [1, 2])
  func denseForwardAndBackwardMatchReference(threads: Int) {
    var rng = RandomGenerator(seed: 21)
    for g in Self.denseCases {
      let x = Tensor.normal(shape: [g.N, g.H, g.W, g.I], using: &rng)
      let weight = Tensor.normal(shape: [g.O, g.KH, g.KW, g.I], using: &rng)
      let bias = Tensor.normal(shape: [g.O], using: &rng)
      let dy = Tensor.normal(shape: [g.N, g.OH, g.OW, g.O], using: &rng)
      let stride = (g.sh, g.sw), padding = (g.ph, g.pw)
      let label = "\(g) threads \(threads)"
      let expected = g.backward(x: x, w: weight, dy: dy)
      Parallel.withThreadCount(threads) {
        let y = x.conv2D(weight: weight, bias: bias, stride: stride, padding: padding)
        #expect(y.shape == [g.N, g.OH, g.OW, g.O], "\(label)")
        expectClose(y, g.forward(x: x, w: weight, b: bias), label)
        expectClose(
          x.conv2D(weight: weight, bias: nil, stride: stride, padding: padding),
          g.forward(x: x, w: weight, b: nil), label + " no bias")
        let grads = Tensor.conv2DBackward(
          input: x, weight: weight, outputGradient: dy, stride: stride, padding: padding,
          needsInputGradient: true, hasBias: true)
        expectClose(grads.input, expected.dx, label + " dx")
        expectClose(grads.weight, expected.dw, label + " dW")
        expectClose(grads.bias, expected.db, label + " db")
        let weightOnly = Tensor.conv2DBackward(
          input: x, weight: weight, outputGradient: dy, stride: stride, padding: padding,
          needsInputGradient: false, hasBias: false)
        #expect(weightOnly.input == nil && weightOnly.bias == nil)
        expectClose(weightOnly.weight, expected.dw, label + " dW only")
      }
    }
  }

  /// A small scratch cap forces one image per im2col pass; dW then accumulates over passes.
  @Test func denseChunkedOverImagesMatchesReference() {
    Convolution2D.$maximumScratchCount.withValue(64) { denseChunkedOverImagesMatchesReferenceWithSmallScratch() }
  }

  private func denseChunkedOverImagesMatchesReferenceWithSmallScratch() {
    var rng = RandomGenerator(seed: 22)
    let g = ConvolutionReference.Dense(N: 3, H: 7, W: 5, I: 3, O: 4, KH: 3, KW: 3, sh: 2, sw: 1, ph: 1, pw: 1)
    #expect(Convolution2D.Geometry(
      batch: 3, height: 7, width: 5, inputChannels: 3, outputChannels: 4, kernelHeight: 3, kernelWidth: 3,
      stride: (2, 1), padding: (1, 1)).imagesPerChunk == 1)
    let x = Tensor.normal(shape: [g.N, g.H, g.W, g.I], using: &rng)
    let weight = Tensor.normal(shape: [g.O, g.KH, g.KW, g.I], using: &rng)
    let bias = Tensor.normal(shape: [g.O], using: &rng)
    let dy = Tensor.normal(shape: [g.N, g.OH, g.OW, g.O], using: &rng)
    let expected = g.backward(x: x, w: weight, dy: dy)
    expectClose(x.conv2D(weight: weight, bias: bias, stride: (2, 1), padding: (1, 1)), g.forward(x: x, w: weight, b: bias), "y")
    let grads = Tensor.conv2DBackward(
      input: x, weight: weight, outputGradient: dy, stride: (2, 1), padding: (1, 1),
      needsInputGradient: true, hasBias: true)
    expectClose(grads.input, expected.dx, "dx")
    expectClose(grads.weight, expected.dw, "dW")
    expectClose(grads.bias, expected.db, "db")
  }

  /// Scratch tensors (cols, dcols, rings, partials) go back to the allocator: while the
  /// results are alive, live bytes grew by exactly their size.
  @Test func scratchBuffersAreFreed() {
    var rng = RandomGenerator(seed: 23)
    let x = Tensor.normal(shape: [2, 9, 9, 4], using: &rng)
    let dense = Tensor.normal(shape: [6, 3, 3, 4], using: &rng)
    let depthwise = Tensor.normal(shape: [5, 5, 4], using: &rng)
    let dyDense = Tensor(shape: [2, 5, 5, 6], repeating: 1)

    /// Live-byte growth across `body` with its results still held, counted by a tracker of its
    /// own so tests running concurrently cannot disturb it.
    func growth(_ body: () -> [Tensor?]) -> Int {
      let memory = MemoryTracker()
      let results = memory.run(body)
      defer { withExtendedLifetime(results) {} }
      return memory.liveBytes
    }

    #expect(growth {
      [x.conv2D(weight: dense, bias: nil, stride: (2, 2), padding: (1, 1))]
    } == dyDense.count * 4)
    #expect(growth {
      let g = Tensor.conv2DBackward(
        input: x, weight: dense, outputGradient: dyDense, stride: (2, 2), padding: (1, 1),
        needsInputGradient: true, hasBias: true)
      return [g.input, g.weight, g.bias]
    } == (x.count + dense.count + 6) * 4)
    #expect(growth {
      let z = x.depthwiseConv2D(weight: depthwise, bias: nil)
      let g = Tensor.depthwiseConv2DBackward(
        input: x, weight: depthwise, outputGradient: z, needsInputGradient: true, hasBias: true)
      return [z, g.input, g.weight, g.bias]
    } == (2 * x.count + depthwise.count + 4) * 4)
  }

  /// An empty batch gives empty outputs and zero (not uninitialized) weight and bias gradients.
  @Test func emptyBatchGivesZeroGradients() {
    let x = Tensor(zeros: [0, 5, 6, 3])
    let depthwise = Tensor(shape: [3, 3, 3], repeating: 1)
    #expect(x.depthwiseConv2D(weight: depthwise, bias: nil).shape == [0, 5, 6, 3])
    let dw = Tensor.depthwiseConv2DBackward(
      input: x, weight: depthwise, outputGradient: x, needsInputGradient: true, hasBias: true)
    #expect(dw.weight.scalars.allSatisfy { $0 == 0 } && dw.bias?.scalars == [0, 0, 0])
    let dense = Tensor(shape: [4, 2, 2, 3], repeating: 1)
    let y = x.conv2D(weight: dense, bias: nil, stride: (2, 2))
    #expect(y.shape == [0, 2, 3, 4])
    let g = Tensor.conv2DBackward(
      input: x, weight: dense, outputGradient: y, stride: (2, 2), needsInputGradient: true, hasBias: true)
    #expect(g.weight.scalars.allSatisfy { $0 == 0 } && g.bias?.scalars == [0, 0, 0, 0])
  }

  // MARK: Preconditions

  @Test func depthwiseChannelMismatchTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [1, 5, 5, 4]).depthwiseConv2D(weight: Tensor(zeros: [3, 3, 5]), bias: nil)
    }
  }

  @Test func denseChannelMismatchTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [1, 5, 5, 4]).conv2D(weight: Tensor(zeros: [2, 3, 3, 3]), bias: nil)
    }
  }

  @Test func denseKernelLargerThanPaddedInputTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [1, 3, 3, 2]).conv2D(weight: Tensor(zeros: [2, 5, 5, 2]), bias: nil, padding: (0, 0))
    }
  }

  @Test func denseNonPositiveStrideTraps() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [1, 4, 4, 2]).conv2D(weight: Tensor(zeros: [2, 2, 2, 2]), bias: nil, stride: (0, 1))
    }
  }
}

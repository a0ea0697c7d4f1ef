import Testing

@testable import QuadraCore

/// The depthwise and fused quadratic kernels at both channel-block widths (8 and 16 lanes, forced
/// with ``DepthwiseConvolution/lanesOverride`` so both run on any machine), on the shapes where the
/// tile paths differ: widths below 7 (8-, 4- and 1-column tiles), widths that are not a multiple of 7
/// (an overlapping last tile), channel counts that are not a multiple of 8 or 16 (partial last
/// blocks), rows split among 1 and 2 threads and forced row ranges.
@Suite struct DepthwiseLaneWidthTests {
  /// (N, H, W, C, k): every W in 1...15 appears with k = 7; C covers 1, 7, 9, 16, 24, 40, 72 and 160.
  static let cases: [(n: Int, h: Int, w: Int, c: Int, k: Int)] = [
    (2, 5, 1, 9, 7), (1, 6, 3, 16, 7), (2, 4, 5, 24, 7), (1, 9, 6, 7, 7), (2, 7, 7, 40, 7),
    (1, 8, 8, 16, 7), (2, 9, 9, 1, 7), (1, 10, 13, 72, 7), (2, 3, 14, 17, 7), (1, 11, 15, 32, 7),
    (2, 6, 10, 48, 7), (1, 5, 11, 33, 7), (1, 7, 12, 20, 7), (2, 8, 4, 64, 7), (1, 4, 2, 8, 7),
    (2, 6, 9, 24, 3), (1, 7, 5, 40, 5), (2, 3, 11, 16, 1),
    // The 28 × 28 models' k = 3 mixers (weight gradients of 2 or 3 kernel rows per pass; H = 2 has only
    // 2-row passes, H = 1 none): 14 × 14 × 40, 7 × 7 × 80, 3 × 3 × 160.
    (2, 14, 14, 40, 3), (1, 7, 7, 80, 3), (3, 3, 3, 160, 3), (1, 2, 5, 24, 3), (2, 1, 4, 8, 3),
    // Rows of ≥ 2048 floats: the input rings copy the next row ahead in slices between channel blocks.
    (2, 9, 40, 64, 7), (1, 8, 23, 100, 7),
  ]

  static let lanes = [8, 16]

  /// Every row width's column tiles lie inside the row and cover all of it (the row kernels write each
  /// output column only through a tile), and the 7×7 rows of the models take the 7-column tile.
  @Test func columnTilesCoverEachRow() {
    func tiles(width: Int, kernelSize: Int) -> [(T: Int, w0: Int)] {
      let shape = DepthwiseConvolution.Shape(
        batch: 1, height: 1, width: width, channels: 8, kernelSize: kernelSize, op: "test")
      var result: [(T: Int, w0: Int)] = []
      DepthwiseConvolution.forEachColumnTile(shape) { result.append(($0, $1)) }
      return result
    }
    #expect(tiles(width: 56, kernelSize: 7).map(\.T) == Array(repeating: 7, count: 8))
    #expect(tiles(width: 14, kernelSize: 3).map(\.T) == [7, 7])
    for w in 1...64 {
      for k in [1, 3, 5, 7] {
        var covered = Array(repeating: false, count: w)
        for (T, w0) in tiles(width: w, kernelSize: k) {
          #expect(w0 >= 0 && w0 + T <= w, "W \(w) k \(k): tile \(w0)..<\(w0 + T) outside the row")
          // Clamped, so that a tile outside the row fails the expectation above instead of trapping here.
          let first = Swift.max(0, w0), end = Swift.max(first, Swift.min(w, w0 + T))
          for column in first..<end { covered[column] = true }
        }
        #expect(!covered.contains(false), "W \(w) k \(k): a column without a tile")
      }
    }
  }

  /// The plain 7×7 row kernel's 8-lane 8-column tiles: as many as whole 8- and 7-column tiles allow, none
  /// where they cannot cover the row (the models' 7-, 14- and 28-column rows); the cases above have rows
  /// that take them (W = 8, 15, 23, 40 with k = 7), so every kernel check runs them at 8 lanes.
  @Test func eightColumnTilesCoverRowsExactly() {
    #expect(DepthwiseConvolution.eightColumnTiles(width: 56) == 7)
    #expect(DepthwiseConvolution.eightColumnTiles(width: 15) == 1)
    for width in [7, 14, 28, 1, 6, 9] { #expect(DepthwiseConvolution.eightColumnTiles(width: width) == nil) }
    for width in 1...300 {
      let best = (1...Swift.max(1, width / 8)).last { 8 * $0 <= width && (width - 8 * $0) % 7 == 0 }
      #expect(DepthwiseConvolution.eightColumnTiles(width: width) == best, "W \(width)")
    }
    #expect(Self.cases.contains { $0.k == 7 && DepthwiseConvolution.eightColumnTiles(width: $0.w) != nil })
  }

  @Test func casesIncludeRowsCopiedAhead() {
    let minimum = DepthwiseConvolution.Kernels<SIMD8<Float>>.PaddedRowRing.minimumCopyAheadRow
    #expect(Self.cases.contains { $0.w * $0.c >= minimum && $0.h > 7 })
  }

  @Test(arguments: lanes, [1, 2])
  func depthwiseMatchesReference(lanes: Int, threads: Int) {
    var rng = RandomGenerator(seed: 900 + UInt64(lanes + threads))
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      Parallel.withThreadCount(threads) {
        for (n, h, w, c, k) in Self.cases {
          let label = "N\(n) \(h)×\(w) C\(c) k\(k) lanes \(lanes) threads \(threads)"
          let shape = DepthwiseConvolution.Shape(batch: n, height: h, width: w, channels: c, kernelSize: k, op: "test")
          #expect(shape.lanes == lanes, "\(label): the override sets the block width")
          Self.checkAgainstReference(n, h, w, c, k, label: label, using: &rng)
        }
      }
    }
  }

  /// Checks one random problem's forward pass, fused backward and weight-only backward against the
  /// reference; returns the problem (`x`, `weight`, `dy`) and the reference's input gradient.
  @discardableResult
  static func checkAgainstReference(
    _ n: Int, _ h: Int, _ w: Int, _ c: Int, _ k: Int, label: String, using rng: inout RandomGenerator
  ) -> (x: Tensor, weight: Tensor, dy: Tensor, dx: [Double]) {
    let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
    let weight = Tensor.normal(shape: [k, k, c], using: &rng)
    let bias = Tensor.normal(shape: [c], using: &rng)
    let dy = Tensor.normal(shape: x.shape, using: &rng)
    expectClose(
      x.depthwiseConv2D(weight: weight, bias: bias), ConvolutionReference.depthwise(x: x, w: weight, b: bias),
      label + " y")
    let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
    let grads = Tensor.depthwiseConv2DBackward(
      input: x, weight: weight, outputGradient: dy, needsInputGradient: true, hasBias: true)
    expectClose(grads.input, expected.dx, label + " dx")
    expectClose(grads.weight, expected.dw, label + " dW")
    expectClose(grads.bias, expected.db, label + " db")
    let weightOnly = Tensor.depthwiseConv2DBackward(
      input: x, weight: weight, outputGradient: dy, needsInputGradient: false, hasBias: true)
    expectClose(weightOnly.weight, expected.dw, label + " dW only")
    expectClose(weightOnly.bias, expected.db, label + " db only")
    return (x, weight, dy, expected.dx)
  }

  /// Which fused backward passes read `x` in place: never a partial last channel block (its loads would run past
  /// the pixel, and at the last pixel past the tensor), a row narrower than 7 or another kernel size, nor 8-lane
  /// blocks that have the paired tile; and the cases above include shapes that take the in-place path.
  @Test func inPlaceWeightGradientOnlyForWholeBlocks() {
    func readsInPlace(lanes: Int, pairs: Bool, w: Int, c: Int, k: Int = 7) -> Bool {
      let shape = DepthwiseConvolution.Shape.made(lanes: lanes, pairs: pairs, width: w, channels: c, kernelSize: k)
      return lanes == 16
        ? DepthwiseConvolution.Kernels<SIMD16<Float>>.weightGradientReadsInputInPlace(shape)
        : DepthwiseConvolution.Kernels<SIMD8<Float>>.weightGradientReadsInputInPlace(shape)
    }
    #expect(readsInPlace(lanes: 16, pairs: true, w: 56, c: 64))
    #expect(!readsInPlace(lanes: 16, pairs: true, w: 56, c: 72))
    #expect(readsInPlace(lanes: 8, pairs: false, w: 56, c: 72))
    #expect(!readsInPlace(lanes: 8, pairs: false, w: 56, c: 100))
    #expect(!readsInPlace(lanes: 8, pairs: true, w: 56, c: 64))
    #expect(!readsInPlace(lanes: 16, pairs: false, w: 6, c: 64))
    #expect(!readsInPlace(lanes: 16, pairs: false, w: 56, c: 64, k: 5))
    #expect(Self.cases.contains { $0.k == 7 && $0.w >= 7 && $0.c % 16 == 0 })
    #expect(Self.cases.contains { $0.k == 7 && $0.w >= 7 && $0.c % 8 == 0 && $0.c % 16 != 0 })
  }

  /// The 7-tap weight-gradient tile one kernel row per pass and two (the default with AVX-512), forced
  /// both ways so either runs on any machine: kernel-row ranges of every length 1...7 (image edges,
  /// images shorter than 7 rows), so pairs, a single leftover row and W % 7 remainders all occur. At 16 lanes,
  /// and without pairs at 8 lanes (AVX2's path), the fused backward reads `x` in place, unpadded, for rows
  /// of ≥ 7 columns and whole channel blocks (``DepthwiseConvolution/Kernels/weightRowUnpadded(rows:khRange:outputGradient:gradientBlockStride:partial:shape:hasBias:)``):
  /// its edge columns and every row width from 7 to 15 (and 23, 40) are checked here.
  @Test(arguments: lanes, [false, true])
  func weightGradientRowPairs(lanes: Int, pairs: Bool) {
    var rng = RandomGenerator(seed: 1100 + UInt64(lanes) + (pairs ? 1 : 0))
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      DepthwiseConvolution.$weightRowPairsOverride.withValue(pairs) {
        for (n, h, w, c, k) in Self.cases where k == 7 {
          let label = "N\(n) \(h)×\(w) C\(c) k\(k) lanes \(lanes) pairs \(pairs)"
          let shape = DepthwiseConvolution.Shape(batch: n, height: h, width: w, channels: c, kernelSize: k, op: "test")
          #expect(shape.pairsWeightRows == pairs, "\(label): the override sets the tile")
          Self.checkAgainstReference(n, h, w, c, k, label: label, using: &rng)
          let problem = QuadraticKernelTests.Problem(n, h, w, c, k, seed: 1150 + UInt64(h * w))
          let expected = QuadraticReference.backward(x: problem.x, w: problem.w, b: problem.b, dy: problem.dy)
          let grads = Tensor.quadraticDepthwiseConv2DBackward(
            input: problem.x, weights: problem.w, biases: problem.b, outputGradient: problem.dy,
            needsInputGradient: false)
          let weights = [grads.weights.0, grads.weights.1, grads.weights.2]
          for i in 0..<3 { expectClose(weights[i], expected.dw[i], tolerance: 2e-4, label + " quadratic dW\(i)") }
        }
      }
    }
  }

  /// The quadratic mixer's 3×3 row kernels with its convolutions accumulated together (the default with
  /// AVX-512's 32 registers) and one after another (AVX2), forced both ways on every column tile (row widths
  /// 1…14) and partial channel blocks: each matches the reference, and the backward's two paths give the
  /// same bits (every sum is taken in the same order; the forward's add `c` at different points).
  @Test(arguments: lanes, [1, 2])
  func quadraticThreeByThreeSharedInputs(lanes: Int, threads: Int) {
    let cases: [(n: Int, h: Int, w: Int, c: Int)] = [
      (1, 3, 1, 9), (2, 5, 2, 16), (2, 9, 3, 8), (2, 11, 5, 1), (2, 6, 6, 20), (1, 3, 7, 13), (1, 5, 11, 5),
      (3, 7, 13, 24), (1, 4, 14, 40), (2, 14, 14, 40), (1, 7, 7, 80),
    ]
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      Parallel.withThreadCount(threads) {
        for (index, (n, h, w, c)) in cases.enumerated() {
          let problem = QuadraticKernelTests.Problem(n, h, w, c, 3, seed: 1300 + UInt64(index))
          let label = problem.label + " lanes \(lanes) threads \(threads)"
          func run(sharing: Bool) -> (y: Tensor, dx: Tensor?, dw: [Tensor], db: [Tensor]) {
            DepthwiseConvolution.$sharedInputTilesOverride.withValue(sharing) {
              #expect(problem.shape.sharesInputs == sharing, "\(label): the override sets the tiles")
              let y = problem.x.quadraticDepthwiseConv2D(weights: problem.w, biases: problem.b)
              let g = Tensor.quadraticDepthwiseConv2DBackward(
                input: problem.x, weights: problem.w, biases: problem.b, outputGradient: problem.dy)
              let db = g.biases.map { [$0.0, $0.1, $0.2] } ?? []
              return (y, g.input, [g.weights.0, g.weights.1, g.weights.2], db)
            }
          }
          let shared = run(sharing: true), separate = run(sharing: false)
          #expect(shared.dx?.scalars == separate.dx?.scalars, "\(label): dx differs between the register paths")
          for i in 0..<3 {
            #expect(shared.dw[i].scalars == separate.dw[i].scalars, "\(label): dW\(i) differs")
            #expect(shared.db[i].scalars == separate.db[i].scalars, "\(label): db\(i) differs")
          }
          let forward = QuadraticReference.forward(x: problem.x, w: problem.w, b: problem.b)
          expectClose(shared.y, forward.y, tolerance: 2e-5, label + " y")
          expectClose(separate.y, forward.y, tolerance: 2e-5, label + " y, one convolution at a time")
          let backward = QuadraticReference.backward(x: problem.x, w: problem.w, b: problem.b, dy: problem.dy)
          expectClose(shared.dx, backward.dx, tolerance: 2e-4, label + " dx")
          for i in 0..<3 {
            expectClose(shared.dw[i], backward.dw[i], tolerance: 2e-4, label + " dW\(i)")
            expectClose(shared.db[i], backward.db[i], tolerance: 2e-4, label + " db\(i)")
          }
        }
      }
    }
  }

  /// The fused backward with its rows forced into several ranges (halo rows at every boundary).
  @Test(arguments: lanes, [2, 3])
  func chunkedFusedBackwardMatchesReference(lanes: Int, chunks: Int) {
    var rng = RandomGenerator(seed: 950 + UInt64(lanes * chunks))
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      for (n, h, w, c, k) in Self.cases where n * h >= chunks {
        DepthwiseBackwardTests.checkChunkedFusedBackward(
          n, h, w, c, k, chunks: chunks, label: "N\(n) \(h)×\(w) C\(c) k\(k) lanes \(lanes) chunks \(chunks)",
          using: &rng)
      }
    }
  }

  @Test(arguments: lanes, [1, 2])
  func quadraticMatchesReference(lanes: Int, threads: Int) {
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      Parallel.withThreadCount(threads) {
        for (index, (n, h, w, c, k)) in Self.cases.enumerated() {
          let problem = QuadraticKernelTests.Problem(n, h, w, c, k, seed: 990 + UInt64(index))
          let label = problem.label + " lanes \(lanes) threads \(threads)"
          let expected = QuadraticReference.backward(x: problem.x, w: problem.w, b: problem.b, dy: problem.dy)
          expectClose(
            problem.x.quadraticDepthwiseConv2D(weights: problem.w, biases: problem.b),
            QuadraticReference.forward(x: problem.x, w: problem.w, b: problem.b).y, tolerance: 2e-4, label + " y")
          let grads = Tensor.quadraticDepthwiseConv2DBackward(
            input: problem.x, weights: problem.w, biases: problem.b, outputGradient: problem.dy,
            needsInputGradient: true)
          expectClose(grads.input, expected.dx, tolerance: 2e-4, label + " dx")
          let weights = [grads.weights.0, grads.weights.1, grads.weights.2]
          let biases = grads.biases.map { [$0.0, $0.1, $0.2] }
          for i in 0..<3 {
            expectClose(weights[i], expected.dw[i], tolerance: 2e-4, label + " dW\(i)")
            expectClose(biases?[i], expected.db[i], tolerance: 2e-4, label + " db\(i)")
          }
        }
      }
    }
  }

  /// AVX-512 whose 512-bit FMAs are two halves takes 16 lanes only where a partial last 16-lane block wastes at
  /// most 1/8 of the lanes; with full-width 512-bit FMAs it always takes 16; AVX2 and the baseline always take 8.
  @Test func laneChoicePerProcessor() {
    #if QUADRANET_PORTABLE
      for c in [8, 16, 64] {
        #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx512) == 8)
        #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx512, fullWidth512: true) == 8)
      }
    #else
      let sixteen = [16, 32, 48, 56, 64, 72, 80, 96, 160, 320, 512]
      let eight = [1, 7, 8, 9, 24, 40]
      for c in sixteen { #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx512) == 16, "C \(c)") }
      for c in eight { #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx512) == 8, "C \(c)") }
      for c in sixteen + eight {
        #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx512, fullWidth512: true) == 16, "C \(c)")
      }
    #endif
    for c in [8, 16, 40, 64, 72] {
      for fullWidth512 in [false, true] {
        #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .avx2, fullWidth512: fullWidth512) == 8)
        #expect(DepthwiseConvolution.preferredLanes(channels: c, isa: .baseline, fullWidth512: fullWidth512) == 8)
      }
    }
  }
}

extension DepthwiseConvolution.Shape {
  /// A one-image, 9-row shape as a kernel call makes it with `lanes`-lane blocks and the paired weight-gradient tile
  /// on or off (both overrides are read when a shape is made).
  static func made(lanes: Int, pairs: Bool, width: Int, channels: Int, kernelSize: Int) -> Self {
    DepthwiseConvolution.$lanesOverride.withValue(lanes) {
      DepthwiseConvolution.$weightRowPairsOverride.withValue(pairs) {
        Self(batch: 1, height: 9, width: width, channels: channels, kernelSize: kernelSize, op: "test")
      }
    }
  }
}

import Testing

@testable import QuadraCore

/// The 7×7 passes that read their input rows in place, in NHWC, with 8- and 7-column tiles
/// (``DepthwiseConvolution/Kernels/inPlaceTiling(_:)``: the forward pass, and `x` and `∂L/∂y` in the fused
/// backward), against the padded-row ring's passes they replace (turned back on with
/// ``DepthwiseConvolution/rowsInPlaceOverride``) and against the reference. The block width and the weight
/// tiles are forced (8 lanes without paired weight rows: AVX2's path; 16 lanes with the in-place weight gradient
/// one kernel row or two per pass: AVX-512's), so every configuration runs on any machine.
@Suite struct DepthwiseInPlaceRowsTests {
  /// (N, H, W, C): rows of one tile (W = 7 with both edges in one 7-column tile, W = 8 in one 8-column tile),
  /// of 8- and 7-column tiles together (15, 22, 23, 29), of 7-column tiles only (14, 28), of 8-column tiles only
  /// (56); with 16 lanes also 14-column tiles (14, 28, 56, 8 + 14 at 22, 14 + 7 at 21); images shorter than the
  /// kernel (H = 1…3), several images per call; 1 to 8 channel blocks.
  static let cases: [(n: Int, h: Int, w: Int, c: Int)] = [
    (2, 9, 7, 8), (1, 8, 8, 16), (2, 5, 14, 24), (1, 6, 15, 32), (3, 2, 22, 16), (2, 3, 23, 40), (1, 10, 28, 64),
    (2, 1, 29, 8), (2, 8, 56, 64), (2, 4, 7, 16), (1, 5, 21, 48),
  ]

  /// A block width with its weight-gradient tiles: 8 lanes with the one-row ring tile (AVX2), 16 lanes with the
  /// in-place weight gradient taking one kernel row or two per pass (AVX-512).
  struct Tiles: Sendable, CustomTestStringConvertible {
    var lanes: Int
    var pairsUnpaddedRows: Bool
    var testDescription: String { "\(lanes) lanes\(pairsUnpaddedRows ? ", paired in-place weight rows" : "")" }
  }

  static let tileConfigurations = [
    Tiles(lanes: 8, pairsUnpaddedRows: false), Tiles(lanes: 16, pairsUnpaddedRows: false),
    Tiles(lanes: 16, pairsUnpaddedRows: true),
  ]

  /// Runs `body` with `tiles`, with the in-place passes on or off.
  static func with<R>(_ tiles: Tiles, inPlace: Bool, _ body: () -> R) -> R {
    DepthwiseConvolution.$lanesOverride.withValue(tiles.lanes) {
      DepthwiseConvolution.$weightRowPairsOverride.withValue(tiles.lanes == 16) {
        DepthwiseConvolution.$unpaddedWeightRowPairsOverride.withValue(tiles.pairsUnpaddedRows) {
          DepthwiseConvolution.$rowsInPlaceOverride.withValue(inPlace ? nil : false, operation: body)
        }
      }
    }
  }

  /// The tiling covers each row exactly with the most 8-column tiles, and exists only where the 7×7 weight gradient
  /// reads `x` in place at 8 lanes: whole channel blocks, rows of at least 7 columns, the one-row weight tile.
  @Test func tilingCoversRowsExactly() {
    func tiling(w: Int, c: Int = 16, k: Int = 7, lanes: Int = 8, pairs: Bool = false) -> (eights: Int, sevens: Int)? {
      let shape = DepthwiseConvolution.Shape.made(lanes: lanes, pairs: pairs, width: w, channels: c, kernelSize: k)
      return lanes == 16
        ? DepthwiseConvolution.Kernels<SIMD16<Float>>.inPlaceTiling(shape)
        : DepthwiseConvolution.Kernels<SIMD8<Float>>.inPlaceTiling(shape)
    }
    for w in 1...300 {
      let expected = (0...(w / 8)).reversed().lazy.map { ($0, w - 8 * $0) }.first { $0.1 % 7 == 0 }
        .flatMap { w >= 7 ? (eights: $0.0, sevens: $0.1 / 7) : nil }
      let actual = tiling(w: w)
      #expect(actual?.eights == expected?.eights && actual?.sevens == expected?.sevens, "W \(w)")
      if let actual { #expect(8 * actual.eights + 7 * actual.sevens == w, "W \(w)") }
    }
    #expect(tiling(w: 56)! == (7, 0))
    #expect(tiling(w: 28)! == (0, 4))
    #expect(tiling(w: 13) == nil)
    #expect(tiling(w: 56, c: 20) == nil, "a partial channel block")
    #expect(tiling(w: 56, k: 5) == nil)
    #expect(tiling(w: 56, lanes: 16, pairs: true)! == (0, 8), "16-lane blocks: 7-column tiles, run in pairs")
    #expect(tiling(w: 22, lanes: 16, pairs: true)! == (1, 2))
    #expect(tiling(w: 56, c: 24, lanes: 16, pairs: true) == nil, "a partial 16-lane block")
    #expect(tiling(w: 56, pairs: true) == nil, "the paired weight tile keeps the ring")
    for (_, _, w, c) in Self.cases { #expect(tiling(w: w, c: c) != nil, "W \(w) C \(c)") }
  }

  /// The same bits as the ring's passes (every output is the same sum in the same order: the ring's pad columns
  /// add `0 · w`; the two-row weight tile adds each row's terms in the one-row tile's order), on 1 and 2 threads,
  /// with the streaming path forced on and off, and the fused backward's rows split into 1 and 3 ranges; and
  /// within tolerance of the reference. Channel counts that are not whole blocks of the width are left out.
  @Test(arguments: [1, 2], tileConfigurations)
  func matchRingAndReference(threads: Int, tiles: Tiles) {
    for streaming in [false, true] {
      var rng = RandomGenerator(seed: 3100 + UInt64(threads) + (streaming ? 10 : 0) + UInt64(tiles.lanes))
      Parallel.withThreadCount(threads) {
        DepthwiseConvolution.$streamingOverride.withValue(streaming) {
          for (n, h, w, c) in Self.cases where c % tiles.lanes == 0 {
            let label = "N\(n) \(h)×\(w) C\(c) threads \(threads) streaming \(streaming) \(tiles.testDescription)"
            let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
            let weight = Tensor.normal(shape: [7, 7, c], using: &rng)
            let bias = Tensor.normal(shape: [c], using: &rng)
            let dy = Tensor.normal(shape: x.shape, using: &rng)
            let shape = Self.with(tiles, inPlace: true) {
              DepthwiseConvolution.Shape(batch: n, height: h, width: w, channels: c, kernelSize: 7, op: "test")
            }
            #expect(Self.with(tiles, inPlace: true) { Self.inPlaceTiling(shape, lanes: tiles.lanes) } != nil)
            #expect(Self.with(tiles, inPlace: false) { Self.inPlaceTiling(shape, lanes: tiles.lanes) } == nil)

            let y = [false, true].map { inPlace in
              Self.with(tiles, inPlace: inPlace) { x.depthwiseConv2D(weight: weight, bias: bias) }
            }
            #expect(y[0].scalars == y[1].scalars, "\(label): forward differs from the ring's")
            expectClose(y[1], ConvolutionReference.depthwise(x: x, w: weight, b: bias), label + " y")

            let expected = ConvolutionReference.depthwiseBackward(x: x, w: weight, dy: dy)
            for chunks in [1, 3] {
              let runs = [false, true].map { inPlace in
                let dx = Tensor(uninitializedShape: x.shape), dw = Tensor(uninitializedShape: weight.shape)
                let db = Tensor(uninitializedShape: bias.shape)
                Self.with(tiles, inPlace: inPlace) {
                  DepthwiseConvolution.backward(
                    input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: dy.buffer.pointer,
                    inputGradient: dx.buffer.pointer, weightGradient: dw.buffer.pointer, biasGradient: db.buffer.pointer,
                    shape: shape, chunks: chunks)
                }
                return (dx, dw, db)
              }
              let run = "\(label) chunks \(chunks)"
              #expect(runs[0].0.scalars == runs[1].0.scalars, "\(run): dx differs from the ring's")
              #expect(runs[0].1.scalars == runs[1].1.scalars, "\(run): dW differs from the ring's")
              #expect(runs[0].2.scalars == runs[1].2.scalars, "\(run): db differs from the ring's")
              expectClose(runs[1].0, expected.dx, run + " dx")
              expectClose(runs[1].1, expected.dw, run + " dW")
              expectClose(runs[1].2, expected.db, run + " db")
            }
            // The public entry, as the backend calls it (without the bias gradient).
            let grads = Self.with(tiles, inPlace: true) {
              Tensor.depthwiseConv2DBackward(
                input: x, weight: weight, outputGradient: dy, needsInputGradient: true, hasBias: false)
            }
            expectClose(grads.input, expected.dx, label + " dx, public entry")
            expectClose(grads.weight, expected.dw, label + " dW, public entry")
          }
        }
      }
    }
  }

  /// The two-row in-place weight tile gives the same bits as the one-row tile (each kernel row's sums in the same
  /// order), with odd and even counts of kernel rows inside the image (H = 1…3 at the image's edges, 7 inside),
  /// through the in-place pass and through the ring's.
  @Test(arguments: [true, false])
  func pairedWeightRowsMatchSingleRows(inPlace: Bool) {
    var rng = RandomGenerator(seed: 3300)
    for (n, h, w, c) in Self.cases where c % 16 == 0 {
      let x = Tensor.normal(shape: [n, h, w, c], using: &rng)
      let weight = Tensor.normal(shape: [7, 7, c], using: &rng)
      let dy = Tensor.normal(shape: x.shape, using: &rng)
      let gradients = [false, true].map { pairs in
        let tiles = Tiles(lanes: 16, pairsUnpaddedRows: pairs)
        let shape = Self.with(tiles, inPlace: inPlace) {
          DepthwiseConvolution.Shape(batch: n, height: h, width: w, channels: c, kernelSize: 7, op: "test")
        }
        #expect(shape.pairsUnpaddedWeightRows == pairs)
        let dx = Tensor(uninitializedShape: x.shape), dw = Tensor(uninitializedShape: weight.shape)
        let db = Tensor(uninitializedShape: [c])
        Self.with(tiles, inPlace: inPlace) {
          DepthwiseConvolution.backward(
            input: x.buffer.pointer, weight: weight.buffer.pointer, outputGradient: dy.buffer.pointer,
            inputGradient: dx.buffer.pointer, weightGradient: dw.buffer.pointer, biasGradient: db.buffer.pointer,
            shape: shape, chunks: 2)
        }
        return dw
      }
      #expect(gradients[0].scalars == gradients[1].scalars, "N\(n) \(h)×\(w) C\(c) in place \(inPlace)")
    }
  }

  /// ``DepthwiseConvolution/Kernels/inPlaceTiling(_:)`` at `lanes` (8 or 16).
  static func inPlaceTiling(_ shape: DepthwiseConvolution.Shape, lanes: Int) -> (eights: Int, sevens: Int)? {
    lanes == 16
      ? DepthwiseConvolution.Kernels<SIMD16<Float>>.inPlaceTiling(shape)
      : DepthwiseConvolution.Kernels<SIMD8<Float>>.inPlaceTiling(shape)
  }
}

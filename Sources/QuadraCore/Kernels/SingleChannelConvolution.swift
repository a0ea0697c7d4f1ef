/// Direct convolution of a single-channel image (the stems of grayscale models), without im2col.
///
/// With one input channel a patch is only `kh·kw` floats (4 for a 2×2 stem, 9 for 3×3), so im2col
/// writes a matrix as large as the output's share of the work and hands GEMM a depth-9 product: the
/// 3×3 stride-1 stem of the full-resolution search space ran at 11 GFLOP/s forward and 8.6 backward on
/// one Zen 3 core, where its output alone (3.2 MB at batch 64) bounds it near 1/4 of that time.
/// Here every output pixel's `O` channels are accumulated in vectors of 8 from the taps' weights
/// (transposed once to `[kh·kw, O]`), broadcasting each input float:
///
///     y[n, oh, ow, o] = b[o] + Σ_{kh, kw} x[n, oh·sh + kh − ph, ow·sw + kw − pw] · W[o, kh, kw]
///     ∂L/∂W[o, kh, kw] = Σ_{n, oh, ow} ∂L/∂y[n, oh, ow, o] · x[n, oh·sh + kh − ph, ow·sw + kw − pw]
///
/// (taps over the padding skipped). The weight gradient sums per chunk of output rows into partials
/// fixed by the shape, so it is the same on any thread count. Used when `I = 1` and `O` is a multiple
/// of 8; the input gradient (which a stem does not need) stays on the im2col path.
extension Convolution2D {
  /// Whether ``forward(input:weight:bias:output:geometry:)`` and the weight gradient take the direct path.
  static func isSingleChannel(_ g: Geometry) -> Bool {
    g.inputChannels == 1 && g.outputChannels % DepthwiseConvolution.lanes == 0 && !singleChannelDisabled
  }

  /// Turns the direct path off (tests compare it with im2col + GEMM); task-local, like ``maximumScratchCount``.
  @TaskLocal static var singleChannelDisabled = false

  /// The valid taps of output position `o` along one axis: `low..<high` (empty when every tap is padding).
  @inline(__always)
  static func tapRange(_ o: Int, stride: Int, padding: Int, kernel: Int, size: Int) -> (low: Int, high: Int) {
    let start = o * stride - padding
    let low = Swift.max(0, -start)
    return (low, Swift.max(low, Swift.min(kernel, size - start)))
  }

  /// `[kh·kw, O]` from the OHWI weight `[O, kh, kw, 1]`, in `taps`.
  static func transposeTaps(_ weight: UnsafePointer<Float>, into taps: UnsafeMutablePointer<Float>, geometry g: Geometry) {
    let K = g.patchCount, O = g.outputChannels
    for t in 0..<K {
      for o in 0..<O { taps[t * O + o] = weight[o * K + t] }
    }
  }

  /// The output columns `low..<high` whose taps along the width all lie inside the image: those its first
  /// and its last tap both reach.
  @inline(__always)
  static func interiorColumns(_ g: Geometry) -> (low: Int, high: Int) {
    let first = columnsReached(by: 0, g), last = columnsReached(by: g.kernelWidth - 1, g)
    let low = Swift.max(first.low, last.low)
    return (low, Swift.max(low, Swift.min(first.high, last.high)))
  }

  /// The output columns `low..<high` whose tap `kw` lies inside the image.
  @inline(__always)
  static func columnsReached(by kw: Int, _ g: Geometry) -> (low: Int, high: Int) {
    let sw = g.strideWidth, offset = g.paddingWidth - kw  // ow · sw − offset ∈ [0, W)
    let low = offset <= 0 ? 0 : Swift.min(g.outputWidth, (offset + sw - 1) / sw)
    let last = g.width - 1 + offset
    let high = last < 0 ? low : Swift.min(g.outputWidth, last / sw + 1)
    return (low, Swift.max(low, high))
  }

  static func singleChannelForward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>, geometry g: Geometry
  ) {
    let OH = g.outputHeight, OW = g.outputWidth, W = g.width, KW = g.kernelWidth
    let O = g.outputChannels, lanes = DepthwiseConvolution.lanes, sw = g.strideWidth
    let interior = interiorColumns(g)
    KernelScratch.with(count: g.patchCount * O) { taps in
      transposeTaps(weight, into: taps, geometry: g)
      Parallel.forRanges(g.batch * OH, minimumChunk: Swift.max(1, 16384 / Swift.max(1, OW * O * g.patchCount))) { range in
        for outputRow in range {
          let (rows, top) = window(of: outputRow, in: input, g)
          let outRow = output + outputRow * OW * O
          var v = 0
          while v < O {
            let start = bias.map { DepthwiseConvolution.load($0 + v) } ?? .zero
            // One pixel with its taps clipped to the image (the borders, and the interior's remainder).
            func single(_ ow: Int) {
              let columns = tapRange(ow, stride: sw, padding: g.paddingWidth, kernel: KW, size: W)
              var sum = start
              for kh in rows.low..<rows.high {
                let line = top + kh * W + ow * sw
                let tapRow = taps + kh * KW * O + v
                for kw in columns.low..<columns.high {
                  sum.addProduct(SIMD8(repeating: line[kw]), DepthwiseConvolution.load(tapRow + kw * O))
                }
              }
              DepthwiseConvolution.store(sum, outRow + ow * O + v)
            }
            for ow in 0..<interior.low { single(ow) }
            // Four interior pixels at a time: four independent FMA chains share each tap's weights.
            var ow = interior.low
            while ow + 4 <= interior.high {
              var s0 = start, s1 = start, s2 = start, s3 = start
              for kh in rows.low..<rows.high {
                let line = top + kh * W + ow * sw
                let tapRow = taps + kh * KW * O + v
                for kw in 0..<KW {
                  let w = DepthwiseConvolution.load(tapRow + kw * O)
                  s0.addProduct(SIMD8(repeating: line[kw]), w)
                  s1.addProduct(SIMD8(repeating: line[sw + kw]), w)
                  s2.addProduct(SIMD8(repeating: line[2 * sw + kw]), w)
                  s3.addProduct(SIMD8(repeating: line[3 * sw + kw]), w)
                }
              }
              let out = outRow + ow * O + v
              DepthwiseConvolution.store(s0, out)
              DepthwiseConvolution.store(s1, out + O)
              DepthwiseConvolution.store(s2, out + 2 * O)
              DepthwiseConvolution.store(s3, out + 3 * O)
              ow += 4
            }
            while ow < OW {
              single(ow)
              ow += 1
            }
            v += lanes
          }
        }
      }
    }
  }

  /// Output row `outputRow` (`n · OH + oh`)'s valid kernel rows, and where its window starts: the input float
  /// at kernel row 0, column 0 of output column 0 (`top + kh·W + ow·sw + kw`; outside the image only where a
  /// tap is padding, and such taps are never read).
  @inline(__always)
  static func window(of outputRow: Int, in input: UnsafePointer<Float>, _ g: Geometry) -> (
    rows: (low: Int, high: Int), top: UnsafePointer<Float>
  ) {
    let n = outputRow / g.outputHeight, oh = outputRow % g.outputHeight
    let rows = tapRange(oh, stride: g.strideHeight, padding: g.paddingHeight, kernel: g.kernelHeight, size: g.height)
    let top = input + n * g.height * g.width + (oh * g.strideHeight - g.paddingHeight) * g.width - g.paddingWidth
    return (rows, top)
  }

  /// `∂L/∂W` (`[O, kh, kw, 1]`, overwritten) of the single-channel convolution: per output row, channel
  /// vector and tap, the product of the row's gradients with the inputs the tap reads, in four chains.
  static func singleChannelWeightGradient(
    input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
    geometry g: Geometry
  ) {
    let OH = g.outputHeight, OW = g.outputWidth, W = g.width, KW = g.kernelWidth
    let K = g.patchCount, O = g.outputChannels, lanes = DepthwiseConvolution.lanes, sw = g.strideWidth
    let reached = (0..<KW).map { columnsReached(by: $0, g) }
    let rowCount = g.batch * OH
    let chunks = ElementwiseKernels.reductionChunkCount(
      rowCount, minimumChunk: Swift.max(1, 16384 / Swift.max(1, OW * O)), partialSize: K * O)
    KernelScratch.with(count: chunks * K * O, zeroed: true) { partials in
      ElementwiseKernels.forChunks(rowCount, chunks: chunks) { chunk, range in
        // partial[t·O + o]: this chunk's sum for tap t and channel o.
        let partial = partials + chunk * K * O
        for outputRow in range {
          let (rows, top) = window(of: outputRow, in: input, g)
          let dyRow = outputGradient + outputRow * OW * O
          var v = 0
          while v < O {
            for kh in rows.low..<rows.high {
              let line = top + kh * W
              for kw in 0..<KW {
                let (low, high) = reached[kw]
                var s0 = SIMD8<Float>.zero, s1 = s0, s2 = s0, s3 = s0
                var ow = low
                while ow + 4 <= high {
                  let x = line + ow * sw + kw
                  let dy = dyRow + ow * O + v
                  s0.addProduct(SIMD8(repeating: x[0]), DepthwiseConvolution.load(dy))
                  s1.addProduct(SIMD8(repeating: x[sw]), DepthwiseConvolution.load(dy + O))
                  s2.addProduct(SIMD8(repeating: x[2 * sw]), DepthwiseConvolution.load(dy + 2 * O))
                  s3.addProduct(SIMD8(repeating: x[3 * sw]), DepthwiseConvolution.load(dy + 3 * O))
                  ow += 4
                }
                while ow < high {
                  s0.addProduct(SIMD8(repeating: line[ow * sw + kw]), DepthwiseConvolution.load(dyRow + ow * O + v))
                  ow += 1
                }
                let slot = partial + (kh * KW + kw) * O + v
                DepthwiseConvolution.store(DepthwiseConvolution.load(slot) + ((s0 + s1) + (s2 + s3)), slot)
              }
            }
            v += lanes
          }
        }
      }
      // Chunks in order (the same sums on any thread count), then back to OHWI.
      for chunk in 1..<Swift.max(1, chunks) {
        DepthwiseConvolution.addInPlace(partials, partials + chunk * K * O, count: K * O)
      }
      for o in 0..<O {
        for t in 0..<K { weightGradient[o * K + t] = partials[t * O + o] }
      }
    }
  }
}

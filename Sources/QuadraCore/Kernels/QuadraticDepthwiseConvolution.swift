/// Fused quadratic depthwise convolution, QuadraNet's token mixer (stride 1, "same" zero
/// padding, channels-last):
///
///     y = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)
///
/// with input `[N, H, W, C]`, three weights `[k, k, C]` (`k` odd) and three biases `[C]`.
///
/// Composed from three ``DepthwiseConvolution`` calls and two elementwise ops, this
/// reads `x` three times and writes `a`, `b`, `c`, `a ⊙ b` and `y`; autograd then keeps
/// `a`, `b`, `c` and `a ⊙ b` alive until the backward pass. The fused kernels reuse the
/// depthwise kernel's padded channel-blocked row ring, packed weights and register tiles:
///
/// - **Forward**: per tile of output columns, `a` and `b` are accumulated in registers
///   from the same ring rows (which are in L1), `a ⊙ b + b_c` seeds the accumulators of
///   `c`, and only `y` is stored.
/// - **Backward** keeps nothing but `x` (and the weights): for each output row it
///   recomputes the row's `a`, `b` tile by tile, forms `g_a = dy ⊙ b`, `g_b = dy ⊙ a`,
///   `g_c = dy` into a ring of `k` padded gradient rows (tile-sized scratch, never whole
///   tensors), adds the row's contribution to all three weight and bias gradients while its
///   input rows are in the ring, and, `p` rows later, when the `k` gradient rows it needs are
///   in the ring, produces the input-gradient row
///   `dx = Σ_i g_i ⋆ flip(W_i)` in one pass with one set of accumulators.
///
/// Threads take contiguous ranges of output rows. The input gradient near a range's first
/// and last rows needs gradient rows of the neighbouring ranges; those `p` rows on each side
/// are recomputed (≤ `2p` rows, a few percent of a range) instead of shared.
/// Weight gradients go to per-thread packed partials that are summed in a fixed order.
public enum QuadraticDepthwiseConvolution {
  typealias Kernel = DepthwiseConvolution
  typealias Shape = DepthwiseConvolution.Shape

  /// One pointer per convolution: `(a, b, c)`.
  public typealias Pointers = (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>)
  /// One output pointer per convolution: `(a, b, c)`.
  public typealias MutablePointers = (
    UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>
  )

  /// A LayerNorm over the channels applied to the input as the kernels read it: the convolutions see
  /// `x̂ = (x − μ)·σ⁻¹ ⊙ γ + β` per pixel (a MetaFormer block's `Mixer(LN(x))` in one op). `x̂` is
  /// never stored: the forward pass writes each pixel's μ and σ⁻¹ (`[N·H·W]` each) in one streaming pass
  /// over `x`, then normalizes rows as it copies them into its row ring; the backward pass normalizes again
  /// from the same statistics and carries the input gradient through the LayerNorm row by row, while the
  /// row is in L1.
  public struct InputNormalization {
    /// γ and β, `[C]` each.
    public var weight: UnsafePointer<Float>
    public var bias: UnsafePointer<Float>
    public var epsilon: Float
    /// Per pixel mean and 1/√(var + ε): written by forward, read by backward.
    public var mean: UnsafeMutablePointer<Float>
    public var inverseStandardDeviation: UnsafeMutablePointer<Float>

    public init(
      weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float, mean: UnsafeMutablePointer<Float>,
      inverseStandardDeviation: UnsafeMutablePointer<Float>
    ) {
      self.weight = weight
      self.bias = bias
      self.epsilon = epsilon
      self.mean = mean
      self.inverseStandardDeviation = inverseStandardDeviation
    }

    /// The ring's view of it for shape `s` (the statistics are known).
    func pixelNormalization<V: SIMD>(
      _ s: Shape, as _: V.Type
    ) -> DepthwiseConvolution.Kernels<V>.PixelNormalization where V.Scalar == Float {
      .init(
        channels: s.channels, weight: weight, bias: bias, mean: mean, inverseStandardDeviation: inverseStandardDeviation)
    }
  }

  // MARK: Forward

  /// `output = (W_a ∗ x + b_a) ⊙ (W_b ∗ x + b_b) + (W_c ∗ x + b_c)`; `output` is fully overwritten.
  /// With `normalization`, `x̂` (see ``InputNormalization``) replaces `x` and its statistics are written.
  ///
  /// - Parameters:
  ///   - weights: three `[k, k, C]` weights.
  ///   - biases: three `[C]` biases, or nil for none.
  public static func forward(
    input: UnsafePointer<Float>, normalization: InputNormalization? = nil, weights: Pointers, biases: Pointers?,
    output: UnsafeMutablePointer<Float>, batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "quadraticDepthwiseConv2D")
    forward(
      input: input, normalization: normalization, weights: weights, biases: biases, output: output, shape: s,
      chunks: s.chunks)
  }

  /// ``forward(input:normalization:weights:biases:output:batch:height:width:channels:kernelSize:)`` with the
  /// rows split into `chunks` ranges (tests force several ranges on small shapes).
  static func forward(
    input: UnsafePointer<Float>, normalization: InputNormalization? = nil, weights: Pointers, biases: Pointers?,
    output: UnsafeMutablePointer<Float>, shape s: Shape, chunks: Int
  ) {
    if s.lanes == 16 {
      Kernels<SIMD16<Float>>.forward(
        input: input, normalization: normalization, weights: weights, biases: biases, output: output, shape: s,
        chunks: chunks)
    } else {
      Kernels<SIMD8<Float>>.forward(
        input: input, normalization: normalization, weights: weights, biases: biases, output: output, shape: s,
        chunks: chunks)
    }
  }

  // MARK: Backward

  /// Gradients of the quadratic depthwise convolution from `x` alone (plus weights and biases),
  /// given `outputGradient = ∂L/∂y`. With `a`, `b` recomputed, `g_a = ∂L/∂y ⊙ b`,
  /// `g_b = ∂L/∂y ⊙ a`, `g_c = ∂L/∂y`:
  ///
  /// - `∂L/∂x[n, h, w, c] = Σ_i Σ_{kh,kw} g_i[n, h + kh − p, w + kw − p, c] · W_i[k−1−kh, k−1−kw, c]`
  ///   (written to `inputGradient` when it is not nil);
  /// - `∂L/∂W_i[kh, kw, c] = Σ_{n,h,w} x[n, h + kh − p, w + kw − p, c] · g_i[n, h, w, c]`;
  /// - `∂L/∂b_i[c] = Σ_{n,h,w} g_i[n, h, w, c]` (when `biasGradients` is not nil).
  ///
  /// All outputs are overwritten. `biases` are the forward biases (needed to recompute `a`, `b`).
  ///
  /// With `normalization` (the statistics its forward pass wrote), the convolutions' input is `x̂` and
  /// the gradients are those of the whole `QDW(LN(x))`: `inputGradient` (required then) is `∂L/∂x` through
  /// the LayerNorm, and `normalizationGradients` receives `∂L/∂γ = Σ ∂L/∂x̂ ⊙ (x − μ)·σ⁻¹` and `∂L/∂β = Σ ∂L/∂x̂`;
  /// `inputGradientAddend` (normalized inputs only), when not nil, is added to `∂L/∂x` as each pixel's gradient
  /// is written (the gradient a block's residual path gives `x`: no separate pass sums the two).
  public static func backward(
    input: UnsafePointer<Float>, normalization: InputNormalization? = nil, weights: Pointers, biases: Pointers?,
    outputGradient: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
    inputGradientAddend: UnsafePointer<Float>? = nil, weightGradients: MutablePointers, biasGradients: MutablePointers?,
    normalizationGradients: (weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>)? = nil,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "quadraticDepthwiseConv2D backward")
    backward(
      input: input, normalization: normalization, weights: weights, biases: biases, outputGradient: outputGradient,
      inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradients: weightGradients,
      biasGradients: biasGradients, normalizationGradients: normalizationGradients, shape: s, chunks: s.reductionChunks)
  }

  /// ``backward(input:normalization:weights:biases:outputGradient:inputGradient:weightGradients:biasGradients:normalizationGradients:batch:height:width:channels:kernelSize:)``
  /// with the rows split into `chunks` ranges.
  static func backward(
    input: UnsafePointer<Float>, normalization: InputNormalization? = nil, weights: Pointers, biases: Pointers?,
    outputGradient: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
    inputGradientAddend: UnsafePointer<Float>? = nil, weightGradients: MutablePointers, biasGradients: MutablePointers?,
    normalizationGradients: (weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>)? = nil,
    shape s: Shape, chunks: Int
  ) {
    precondition(
      normalization == nil || (inputGradient != nil && normalizationGradients != nil),
      "quadraticDepthwiseConv2D backward: a normalized input needs the input and normalization gradients")
    precondition(
      inputGradientAddend == nil || normalization != nil,
      "quadraticDepthwiseConv2D backward: an input-gradient addend needs a normalized input")
    if s.lanes == 16 {
      Kernels<SIMD16<Float>>.backward(
        input: input, normalization: normalization, weights: weights, biases: biases, outputGradient: outputGradient,
        inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradients: weightGradients,
        biasGradients: biasGradients, normalizationGradients: normalizationGradients, shape: s, chunks: chunks)
    } else {
      Kernels<SIMD8<Float>>.backward(
        input: input, normalization: normalization, weights: weights, biases: biases, outputGradient: outputGradient,
        inputGradient: inputGradient, inputGradientAddend: inputGradientAddend, weightGradients: weightGradients,
        biasGradients: biasGradients, normalizationGradients: normalizationGradients, shape: s, chunks: chunks)
    }
  }
}

extension QuadraticDepthwiseConvolution {
  /// The fused kernels for one vector type `V` (`SIMD8<Float>` or `SIMD16<Float>`), built from the
  /// depthwise tiles of the same width.
  enum Kernels<V: SIMD> where V.Scalar == Float {
    typealias Tiles = DepthwiseConvolution.Kernels<V>
    typealias Tile = Tiles.Tile
    /// Lanes per channel block: a constant once specialized.
    @inline(__always) static var L: Int { V.scalarCount }

    /// ``QuadraticDepthwiseConvolution/forward(input:weights:biases:output:batch:height:width:channels:kernelSize:)``
    /// at this width, with the rows split into `chunks` ranges.
    static func forward(
      input: UnsafePointer<Float>, normalization: InputNormalization?, weights: Pointers, biases: Pointers?,
      output: UnsafeMutablePointer<Float>, shape s: Shape, chunks: Int
    ) {
      guard s.rows > 0 else { return }
      let P = s.packedWeightCount, B = s.packedBiasCount
      let ringCount = Tiles.PaddedRowRing.storageCount(s)
      let scratch = Tensor(uninitializedShape: [3 * (P + B) + chunks * ringCount])
      let packed = scratch.buffer.pointer
      let packedBias = packed + 3 * P
      let rings = packedBias + 3 * B
      Kernel.packWeight(weights.0, into: packed, shape: s, flipped: false)
      Kernel.packWeight(weights.1, into: packed + P, shape: s, flipped: false)
      Kernel.packWeight(weights.2, into: packed + 2 * P, shape: s, flipped: false)
      Kernel.packBias(biases?.0, into: packedBias, shape: s)
      Kernel.packBias(biases?.1, into: packedBias + B, shape: s)
      Kernel.packBias(biases?.2, into: packedBias + 2 * B, shape: s)
      if let normalization {
        NormalizationKernels.layerNormStatistics(
          input, rows: s.batch * s.height * s.width, columns: s.channels, epsilon: normalization.epsilon,
          mean: normalization.mean, inverseStandardDeviation: normalization.inverseStandardDeviation)
      }

      Parallel.forEach(chunks) { chunk in
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: s.kernelSize) { table in
          let rows = table.baseAddress!
          var ring = Tiles.PaddedRowRing(
            input: input, shape: s, storage: rings + chunk * ringCount, rows: rows,
            normalization: normalization?.pixelNormalization(s, as: V.self))
          for row in s.chunkRows(chunk, of: chunks) {
            let khRange = ring.prepare(row: row)
            let out = output + row * s.width * s.channels
            if s.kernelSize == 3 && s.sharesInputs {
              forwardRow3(
                rows: UnsafePointer(rows), khRange: khRange, weights: packed, biases: packedBias, output: out, shape: s
              ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
            } else {
              forwardRow(
                rows: UnsafePointer(rows), khRange: khRange, weights: packed, biases: packedBias, output: out, shape: s
              ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
            }
          }
        }
      }
      withExtendedLifetime(scratch) {}
    }

    /// One output row: per channel block and column tile, `a` and `b` in registers, then
    /// `c` accumulated on top of `a ⊙ b + b_c`.
    ///
    /// Not inlined into the row loop: next to the call of ``forwardRow3(rows:khRange:weights:biases:output:shape:afterBlock:)``
    /// there, its 7×7 loops (the same instructions at other addresses) ran 3–6% slower on Zen 4; on their own
    /// they run as before.
    ///
    /// - Parameters:
    ///   - weights: the three packed weights, `Shape/packedWeightCount` floats apart.
    ///   - biases: the three packed biases, `blocks · L` floats apart.
    ///   - afterBlock: runs after each channel block with its index (the caller copies the next input row ahead).
    @inline(never)
    static func forwardRow(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, weights: UnsafePointer<Float>,
      biases: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, shape s: Shape, afterBlock: (Int) -> Void
    ) {
      let k = s.kernelSize, C = s.channels, P = s.packedWeightCount, B = s.packedBiasCount
      for block in 0..<s.blocks {
        let lanesUsed = Swift.min(L, C - block * L)
        let wa = weights + block * k * k * L, wb = wa + P, wc = wb + P
        let ba = Tiles.load(biases + block * L)
        let bb = Tiles.load(biases + B + block * L)
        let bc = Tiles.load(biases + 2 * B + block * L)
        let x = block * s.blockRowCount
        let out = output + block * L
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var a = Tile(repeating: ba)
          Tiles.accumulate(T, &a, rows, khRange, xt, wa, k)
          var b = Tile(repeating: bb)
          Tiles.accumulate(T, &b, rows, khRange, xt, wb, k)
          var y = Tile.multiplyAdd(a, b, Tile(repeating: bc))
          Tiles.accumulate(T, &y, rows, khRange, xt, wc, k)
          y.store(T, out + w0 * C, stride: C, lanes: lanesUsed)
        }
        afterBlock(block)
      }
    }

    /// ``QuadraticDepthwiseConvolution/backward(input:weights:biases:outputGradient:inputGradient:weightGradients:biasGradients:batch:height:width:channels:kernelSize:)``
    /// at this width, with the rows split into `chunks` ranges.
    static func backward(
      input: UnsafePointer<Float>, normalization: InputNormalization?, weights: Pointers, biases: Pointers?,
      outputGradient: UnsafePointer<Float>, inputGradient: UnsafeMutablePointer<Float>?,
      inputGradientAddend: UnsafePointer<Float>?, weightGradients: MutablePointers, biasGradients: MutablePointers?,
      normalizationGradients: (weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>)?,
      shape s: Shape, chunks: Int
    ) {
      let k = s.kernelSize, H = s.height, p = s.padding, C = s.channels
      let P = s.packedWeightCount, B = s.packedBiasCount
      let ringCount = k * s.paddedRowCount
      let inputRingCount = Tiles.PaddedRowRing.storageCount(s)
      let partialCount = Kernel.partialCount(s)
      // The LayerNorm's ∂γ and ∂β partials of a chunk.
      let normalizationPartialCount = normalization != nil ? 2 * C : 0
      // Per chunk: the input ring, three gradient rings (g_a, g_b, g_c), three partials and the norm's.
      let perChunk = inputRingCount + 3 * ringCount + 3 * partialCount + normalizationPartialCount
      let flippedCount = inputGradient != nil ? 3 * P : 0
      let scratch = Tensor(uninitializedShape: [2 * (P + B) + flippedCount + chunks * perChunk])
      let packed = scratch.buffer.pointer  // W_a, W_b for recomputing a, b
      let packedBias = packed + 2 * P  // b_a, b_b
      let flipped = packedBias + 2 * B  // W_a, W_b, W_c mirrored, for ∂L/∂x
      let chunkBase = flipped + flippedCount
      Kernel.packWeight(weights.0, into: packed, shape: s, flipped: false)
      Kernel.packWeight(weights.1, into: packed + P, shape: s, flipped: false)
      Kernel.packBias(biases?.0, into: packedBias, shape: s)
      Kernel.packBias(biases?.1, into: packedBias + B, shape: s)
      if inputGradient != nil {
        Kernel.packWeight(weights.0, into: flipped, shape: s, flipped: true)
        Kernel.packWeight(weights.1, into: flipped + P, shape: s, flipped: true)
        Kernel.packWeight(weights.2, into: flipped + 2 * P, shape: s, flipped: true)
      }
      let hasBias = biasGradients != nil

      Parallel.forEach(chunks) { chunk in
        let inputRing = chunkBase + chunk * perChunk
        let gradientRings = inputRing + inputRingCount  // [3][k slots][paddedRowCount]
        let partials = gradientRings + 3 * ringCount  // [3][partialCount]
        // Pad columns and unused lanes of the gradient rows stay zero; rows only write real elements.
        let normalizationPartials = partials + 3 * partialCount  // [∂γ | ∂β]
        gradientRings.initialize(repeating: 0, count: 3 * ringCount)
        partials.initialize(repeating: 0, count: 3 * partialCount + normalizationPartialCount)
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 4 * k) { table in
          let inputRows = table.baseAddress!
          let gradientRows = inputRows + k  // [3][k]: ring rows of g_a, g_b, g_c per kernel row
          let rows = s.chunkRows(chunk, of: chunks)
          var ring = Tiles.PaddedRowRing(
            input: input, shape: s, storage: inputRing, rows: inputRows,
            normalization: normalization?.pixelNormalization(s, as: V.self))
          var next = Int.min  // the next gradient row to compute (flattened n · H + h)
          for row in rows {
            // Gradient rows that must be in the ring: the p rows around `row` inside its image
            // for ∂L/∂x, only `row` itself otherwise.
            let image = row - row % H, h = row % H
            let needed =
              inputGradient == nil
              ? row...row : (image + Swift.max(0, h - p))...(image + Swift.min(H - 1, h + p))
            next = Swift.max(next, needed.lowerBound)
            while next <= needed.upperBound {
              let khRange = ring.prepare(row: next)
              let slot = gradientRings + ((next % H) % k) * s.paddedRowCount
              let dy = outputGradient + next * s.width * s.channels
              if k == 3 {
                gradientRow3(
                  inputRows: UnsafePointer(inputRows), khRange: khRange, outputGradient: dy, weights: packed,
                  biases: packedBias, gradients: slot, ringCount: ringCount, shape: s
                ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
              } else {
                gradientRow(
                  inputRows: UnsafePointer(inputRows), khRange: khRange, outputGradient: dy, weights: packed,
                  biases: packedBias, gradients: slot, ringCount: ringCount, shape: s
                ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
              }
              if rows.contains(next) {
                // Halo rows belong to the neighbouring range's weight gradients.
                for i in 0..<3 {
                  Tiles.weightRow(
                    rows: UnsafePointer(inputRows), khRange: khRange,
                    outputGradient: slot + i * ringCount + p * L, gradientBlockStride: s.blockRowCount,
                    partial: partials + i * partialCount, shape: s, hasBias: hasBias, afterBlock: { _ in })
                }
              }
              next += 1
            }
            if let inputGradient {
              let khRange = s.kernelRows(at: h)
              for kh in khRange {
                let slot = UnsafePointer(gradientRings + ((h - p + kh) % k) * s.paddedRowCount)
                gradientRows[kh] = slot
                gradientRows[k + kh] = slot + ringCount
                gradientRows[2 * k + kh] = slot + 2 * ringCount
              }
              let dx = inputGradient + row * s.width * s.channels
              if k == 3 {
                inputGradientRow3(
                  gradientRows: UnsafePointer(gradientRows), khRange: khRange, weights: flipped, output: dx, shape: s)
              } else {
                inputGradientRow(
                  gradientRows: UnsafePointer(gradientRows), khRange: khRange, weights: flipped, output: dx, shape: s)
              }
              if let normalization {
                normalizationBackwardRow(
                  row, gradient: dx, input: input, normalization: normalization, shape: s,
                  weightGradientSum: normalizationPartials, biasGradientSum: normalizationPartials + C,
                  addend: inputGradientAddend.map { $0 + row * s.width * C })
              }
            }
          }
        }
      }

      let firstPartial = chunkBase + inputRingCount + 3 * ringCount
      Kernel.reducePartials(
        first: firstPartial, stride: perChunk, chunks: chunks, shape: s,
        weightGradient: weightGradients.0, biasGradient: biasGradients?.0)
      Kernel.reducePartials(
        first: firstPartial + partialCount, stride: perChunk, chunks: chunks, shape: s,
        weightGradient: weightGradients.1, biasGradient: biasGradients?.1)
      Kernel.reducePartials(
        first: firstPartial + 2 * partialCount, stride: perChunk, chunks: chunks, shape: s,
        weightGradient: weightGradients.2, biasGradient: biasGradients?.2)
      if let normalizationGradients {
        // Chunk by chunk in a fixed order: the same bits on any thread count.
        let first = firstPartial + 3 * partialCount
        normalizationGradients.weight.update(from: first, count: C)
        normalizationGradients.bias.update(from: first + C, count: C)
        for chunk in 1..<chunks {
          ElementwiseKernels.accumulate(first + chunk * perChunk, into: normalizationGradients.weight, count: C)
          ElementwiseKernels.accumulate(first + chunk * perChunk + C, into: normalizationGradients.bias, count: C)
        }
      }
      withExtendedLifetime(scratch) {}
    }

    /// Carries one row of `∂L/∂x̂` (in `gradient`, overwritten with `∂L/∂x`, plus the same row of `addend`
    /// when given) back through the LayerNorm, pixel by pixel while the row is in L1, and adds the row's
    /// `∂L/∂γ`, `∂L/∂β` to the chunk's sums.
    @inline(never)
    static func normalizationBackwardRow(
      _ row: Int, gradient: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
      normalization: InputNormalization, shape s: Shape, weightGradientSum: UnsafeMutablePointer<Float>,
      biasGradientSum: UnsafeMutablePointer<Float>, addend: UnsafePointer<Float>?
    ) {
      let C = s.channels
      for w in 0..<s.width {
        let pixel = row * s.width + w
        NormalizationKernels.layerNormBackwardRow(
          gradient + w * C, input + pixel * C, columns: C, weight: normalization.weight,
          mean: normalization.mean[pixel], inverseStandardDeviation: normalization.inverseStandardDeviation[pixel],
          inputGradient: gradient + w * C, weightGradientSum: weightGradientSum, biasGradientSum: biasGradientSum,
          residualGradient: addend.map { $0 + w * C })
      }
    }

    /// Fills one ring slot with the padded, channel-blocked gradient rows
    /// `g_a = dy ⊙ b`, `g_b = dy ⊙ a`, `g_c = dy` of one output row, recomputing that row's
    /// `a` and `b` tile by tile from the input ring.
    ///
    /// - Parameters:
    ///   - gradients: the slot of `g_a`; those of `g_b` and `g_c` follow `ringCount` floats apart.
    ///   - afterBlock: runs after each channel block with its index (the caller copies the next input row ahead).
    @inline(__always)
    static func gradientRow(
      inputRows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient: UnsafePointer<Float>,
      weights: UnsafePointer<Float>, biases: UnsafePointer<Float>, gradients ga: UnsafeMutablePointer<Float>,
      ringCount: Int, shape s: Shape, afterBlock: (Int) -> Void
    ) {
      let k = s.kernelSize, p = s.padding, P = s.packedWeightCount, B = s.packedBiasCount
      let gb = ga + ringCount, gc = gb + ringCount
      Tiles.scatterRow(outputGradient, into: gc + p * L, shape: s, blockStride: s.blockRowCount)
      for block in 0..<s.blocks {
        let wa = weights + block * k * k * L, wb = wa + P
        let ba = Tiles.load(biases + block * L)
        let bb = Tiles.load(biases + B + block * L)
        let x = block * s.blockRowCount
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var a = Tile(repeating: ba)
          Tiles.accumulate(T, &a, inputRows, khRange, xt, wa, k)
          var b = Tile(repeating: bb)
          Tiles.accumulate(T, &b, inputRows, khRange, xt, wb, k)
          // Output column w0 sits at padded column w0 + p.
          storeFactorGradients(T, a: a, b: b, at: xt + p * L, ga: ga, gb: gb, gc: gc)
        }
        afterBlock(block)
      }
    }

    /// `g_a = dy ⊙ b` and `g_b = dy ⊙ a` of one tile, at offset `at` of the gradient rows (`dy` is in `gc`).
    @inline(__always)
    static func storeFactorGradients(
      _ T: Int, a: Tile, b: Tile, at: Int, ga: UnsafeMutablePointer<Float>, gb: UnsafeMutablePointer<Float>,
      gc: UnsafePointer<Float>
    ) {
      let dy = Tile(T, loading: gc + at)
      (dy * b).store(T, blocked: ga + at)
      (dy * a).store(T, blocked: gb + at)
    }

    /// One row of `∂L/∂x = Σ_i g_i ⋆ flip(W_i)`: the three correlations share one set of
    /// accumulators per tile, so the row is written once.
    ///
    /// - Parameters:
    ///   - gradientRows: `[3][k]` ring rows of `g_a`, `g_b`, `g_c` for each kernel row.
    ///   - weights: the three mirrored packed weights, `Shape/packedWeightCount` floats apart.
    @inline(__always)
    static func inputGradientRow(
      gradientRows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, weights: UnsafePointer<Float>,
      output: UnsafeMutablePointer<Float>, shape s: Shape
    ) {
      let k = s.kernelSize, C = s.channels, P = s.packedWeightCount
      for block in 0..<s.blocks {
        let lanesUsed = Swift.min(L, C - block * L)
        let wa = weights + block * k * k * L, wb = wa + P, wc = wb + P
        let x = block * s.blockRowCount
        let out = output + block * L
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var dx = Tile(repeating: .zero)
          Tiles.accumulate(T, &dx, gradientRows, khRange, xt, wa, k)
          Tiles.accumulate(T, &dx, gradientRows + k, khRange, xt, wb, k)
          Tiles.accumulate(T, &dx, gradientRows + 2 * k, khRange, xt, wc, k)
          dx.store(T, out + w0 * C, stride: C, lanes: lanesUsed)
        }
      }
    }

    // MARK: 3×3

    // The 28×28 models' mixers (k = 3) run on short rows (14, 7 and 3 columns), where the general tiles'
    // `T + 1` loads per `T` FMAs leave the load ports, not the FMAs, setting the pace. These row kernels
    // use ``Tiles/accumulate3(_:_:_:_:_:_:_:_:_:_:_:)`` instead, with the convolutions of the same input
    // rows accumulated together where the registers allow (``DepthwiseConvolution/Shape/sharesInputs``).
    // They are separate functions, not branches of the general row kernels, so that the 7×7 tiles compile
    // to the same instructions as before. The backward's two register paths compute every sum in the same
    // order, so they give the same bits.

    /// ``forwardRow(rows:khRange:weights:biases:output:shape:afterBlock:)`` for `k = 3` with shared inputs
    /// (AVX-512): `a`, `b` and `c` (on its bias) in one pass over the input rows, then `y = a ⊙ b + c`.
    /// Without the 32 registers the general kernel runs: there `c`'s taps are added to `a ⊙ b + b_c`, so that
    /// no more than two tiles of accumulators are live (a sliding-window version of it for AVX2's 16 registers,
    /// measured on Zen 4 in a `znver3` build, ran 8–17% slower than the general loop: it spilled).
    @inline(never)
    static func forwardRow3(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, weights: UnsafePointer<Float>,
      biases: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, shape s: Shape, afterBlock: (Int) -> Void
    ) {
      let C = s.channels, P = s.packedWeightCount, B = s.packedBiasCount
      for block in 0..<s.blocks {
        let lanesUsed = Swift.min(L, C - block * L)
        let wa = weights + block * 9 * L, wb = wa + P, wc = wb + P
        let ba = Tiles.load(biases + block * L)
        let bb = Tiles.load(biases + B + block * L)
        let bc = Tiles.load(biases + 2 * B + block * L)
        let x = block * s.blockRowCount
        let out = output + block * L
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var a = Tile(repeating: ba), b = Tile(repeating: bb), c = Tile(repeating: bc)
          Tiles.accumulate3(T, 3, &a, &b, &c, rows, khRange, xt, wa, wb, wc)
          Tile.multiplyAdd(a, b, c).store(T, out + w0 * C, stride: C, lanes: lanesUsed)
        }
        afterBlock(block)
      }
    }

    /// ``gradientRow(inputRows:khRange:outputGradient:weights:biases:gradients:ringCount:shape:afterBlock:)``
    /// for `k = 3`.
    @inline(never)
    static func gradientRow3(
      inputRows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient: UnsafePointer<Float>,
      weights: UnsafePointer<Float>, biases: UnsafePointer<Float>, gradients ga: UnsafeMutablePointer<Float>,
      ringCount: Int, shape s: Shape, afterBlock: (Int) -> Void
    ) {
      let P = s.packedWeightCount, B = s.packedBiasCount
      let gb = ga + ringCount, gc = gb + ringCount
      Tiles.scatterRow(outputGradient, into: gc + L, shape: s, blockStride: s.blockRowCount)
      for block in 0..<s.blocks {
        let wa = weights + block * 9 * L, wb = wa + P
        let ba = Tiles.load(biases + block * L)
        let bb = Tiles.load(biases + B + block * L)
        let x = block * s.blockRowCount
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var a = Tile(repeating: ba), b = Tile(repeating: bb), unused = (a, a)
          if s.sharesInputs {
            Tiles.accumulate3(T, 2, &a, &b, &unused.0, inputRows, khRange, xt, wa, wb, wb)
          } else {
            Tiles.accumulate3(T, 1, &a, &unused.0, &unused.1, inputRows, khRange, xt, wa, wa, wa)
            Tiles.accumulate3(T, 1, &b, &unused.0, &unused.1, inputRows, khRange, xt, wb, wb, wb)
          }
          // Output column w0 sits at padded column w0 + 1.
          storeFactorGradients(T, a: a, b: b, at: xt + L, ga: ga, gb: gb, gc: gc)
        }
        afterBlock(block)
      }
    }

    /// ``inputGradientRow(gradientRows:khRange:weights:output:shape:)`` for `k = 3`.
    @inline(never)
    static func inputGradientRow3(
      gradientRows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, weights: UnsafePointer<Float>,
      output: UnsafeMutablePointer<Float>, shape s: Shape
    ) {
      let C = s.channels, P = s.packedWeightCount
      for block in 0..<s.blocks {
        let lanesUsed = Swift.min(L, C - block * L)
        let wa = weights + block * 9 * L, wb = wa + P, wc = wb + P
        let x = block * s.blockRowCount
        let out = output + block * L
        DepthwiseConvolution.forEachColumnTile(s) { T, w0 in
          let xt = x + w0 * L
          var dx = Tile(repeating: .zero), unused = (dx, dx)
          Tiles.accumulate3(T, 1, &dx, &unused.0, &unused.1, gradientRows, khRange, xt, wa, wa, wa)
          Tiles.accumulate3(T, 1, &dx, &unused.0, &unused.1, gradientRows + 3, khRange, xt, wb, wb, wb)
          Tiles.accumulate3(T, 1, &dx, &unused.0, &unused.1, gradientRows + 6, khRange, xt, wc, wc, wc)
          dx.store(T, out + w0 * C, stride: C, lanes: lanesUsed)
        }
      }
    }
  }
}

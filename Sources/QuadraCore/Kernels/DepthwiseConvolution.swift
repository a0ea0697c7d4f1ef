/// Depthwise 2-D convolution, stride 1, "same" zero padding, channels-last.
///
/// `y[n, h, w, c] = b[c] + Σ_{i,j < k} x[n, h + i − p, w + j − p, c] · W[i, j, c]`
/// with `p = k / 2` (`k` odd), input `[N, H, W, C]`, weight `[k, k, C]`, bias `[C]`.
///
/// ## Layout
/// Channels are processed in blocks of 8 (one `SIMD8<Float>`, one ymm register).
/// Each thread copies the input rows it needs, once each, into a small ring of
/// *padded, channel-blocked* rows: `[C/8 blocks][W + 2p columns][8 lanes]`, zero
/// in the `p` pad columns on each side and in the unused lanes of a last partial
/// block. The weights are repacked the same way (`[C/8][k][k][8]`). Then
///
/// - no inner loop tests a column bound (every output column is "interior");
///   rows above/below the image are skipped by restricting the kernel rows;
/// - every load in the inner loops is a full vector at a constant offset from a
///   pointer that advances by 8 floats, so the loops need few registers and each
///   cache line is used fully; a channel block's `k` rows (≈ 2 KB each) stay in L1;
/// - channel counts that are not a multiple of 8 run the same vector code on zero
///   lanes; only the final store of a partial block writes fewer lanes.
///
/// The forward tile keeps 8 output columns × 8 channels of accumulators in
/// registers and reuses each loaded weight vector 8 times (9 loads per 8 FMAs).
/// A fused variant (several kernels over the same input) would load `x` once per
/// tap and feed one accumulator set per kernel.
public enum DepthwiseConvolution {
  typealias Vector = SIMD8<Float>
  static let lanes = 8

  @inline(__always) static func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
  }

  @inline(__always) static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: Vector.self)
  }

  /// `accumulator + a · b`, one FMA instruction on targets that have it.
  @inline(__always) static func multiplyAdd(_ accumulator: Vector, _ a: Vector, _ b: Vector) -> Vector {
    #if QUADRANET_PORTABLE
      // Without a known FMA unit `addingProduct` becomes a libm `fmaf` call per lane.
      return accumulator + a * b
    #else
      return accumulator.addingProduct(a, b)
    #endif
  }

  /// Stores the first `count` (1...8) lanes of `value`.
  @inline(__always) static func store(_ value: Vector, _ pointer: UnsafeMutablePointer<Float>, lanes count: Int) {
    if count == lanes {
      store(value, pointer)
    } else {
      for lane in 0..<count { pointer[lane] = value[lane] }
    }
  }

  /// `target[i] += source[i]` for `i < count`.
  @inline(__always)
  static func addInPlace(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
    var i = 0
    while i + lanes <= count {
      store(load(target + i) + load(source + i), target + i)
      i += lanes
    }
    while i < count {
      target[i] += source[i]
      i += 1
    }
  }

  // MARK: Geometry and packing

  /// Sizes of one depthwise convolution and of its channel-blocked scratch rows.
  struct Shape {
    let batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int

    init(batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int, op: String) {
      precondition(
        kernelSize >= 1 && kernelSize % 2 == 1, "\(op): kernel size must be odd and positive, got \(kernelSize)")
      precondition(
        batch >= 0 && height >= 1 && width >= 1 && channels >= 1,
        "\(op): bad input shape [\(batch), \(height), \(width), \(channels)]")
      self.batch = batch
      self.height = height
      self.width = width
      self.channels = channels
      self.kernelSize = kernelSize
    }

    var padding: Int { kernelSize / 2 }
    var blocks: Int { (channels + lanes - 1) / lanes }
    var rows: Int { batch * height }
    /// Floats of one channel block of one padded row.
    var blockRowCount: Int { (width + 2 * padding) * lanes }
    /// Floats of one padded, blocked row (all channel blocks).
    var paddedRowCount: Int { blocks * blockRowCount }
    /// Floats of the packed weight `[blocks][k][k][8]`.
    var packedWeightCount: Int { blocks * kernelSize * kernelSize * lanes }
    var flopsPerRow: Int { 2 * width * channels * kernelSize * kernelSize }

    /// Per-thread chunks of output rows: enough work per chunk to pay for a dispatch.
    var chunks: Int {
      let minimumRows = Swift.max(1, (1 << 18) / Swift.max(flopsPerRow, 1))
      return Swift.max(1, Swift.min(Parallel.threadCount, rows / minimumRows))
    }

    func chunkRows(_ chunk: Int) -> Range<Int> {
      (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks)
    }
  }

  /// Repacks `weight` `[k, k, C]` as `[blocks][k][k][8]` with zero lanes past `C`;
  /// `flipped` mirrors both spatial axes (for the input gradient).
  static func packWeight(
    _ weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>, shape s: Shape, flipped: Bool
  ) {
    let k = s.kernelSize, C = s.channels
    packed.initialize(repeating: 0, count: s.packedWeightCount)
    for tap in 0..<(k * k) {
      let source = weight + (flipped ? k * k - 1 - tap : tap) * C
      for c in 0..<C {
        packed[((c / lanes) * k * k + tap) * lanes + c % lanes] = source[c]
      }
    }
  }

  /// Copies the `count` floats of `source` into blocks of 8 lanes placed `blockStride` apart.
  @inline(__always)
  static func scatterToBlocks(
    _ source: UnsafePointer<Float>, count: Int, _ target: UnsafeMutablePointer<Float>, blockStride: Int
  ) {
    var c = 0, block = 0
    while c + lanes <= count {
      store(load(source + c), target + block * blockStride)
      c += lanes
      block += 1
    }
    let rest = target + block * blockStride
    for lane in 0..<(count - c) { rest[lane] = source[c + lane] }
  }

  /// The input rows one output row needs, as padded channel-blocked rows in a ring of `k` slots.
  ///
  /// Rows are copied once per thread chunk as the output row advances; rows above and
  /// below the image are not materialized (``prepare(row:)`` returns the kernel rows
  /// that fall inside the image).
  struct PaddedRowRing {
    let input: UnsafePointer<Float>
    let shape: Shape
    /// `k` slots of ``Shape/paddedRowCount`` floats.
    let storage: UnsafeMutablePointer<Float>
    /// For each kernel row `kh`, the slot it reads for the current output row.
    let rows: UnsafeMutablePointer<UnsafePointer<Float>>
    private var image = -1
    private var nextRow = 0

    init(input: UnsafePointer<Float>, shape: Shape, storage: UnsafeMutablePointer<Float>,
         rows: UnsafeMutablePointer<UnsafePointer<Float>>) {
      self.input = input
      self.shape = shape
      self.storage = storage
      self.rows = rows
      // Pad columns and unused lanes stay zero; row copies only write real elements.
      storage.initialize(repeating: 0, count: shape.kernelSize * shape.paddedRowCount)
    }

    /// Loads the input rows output row `row` (flattened `n · H + h`) needs, points
    /// ``rows`` at them and returns the kernel rows inside the image.
    mutating func prepare(row: Int) -> Range<Int> {
      let s = shape, H = s.height, p = s.padding, k = s.kernelSize
      let n = row / H, h = row % H
      if n != image {
        image = n
        nextRow = 0
      }
      let khRange = Swift.max(0, p - h)..<Swift.min(k, H + p - h)
      nextRow = Swift.max(nextRow, h - p + khRange.lowerBound)
      while nextRow < h - p + khRange.upperBound {
        let slot = storage + (nextRow % k) * s.paddedRowCount
        let source = input + (n * H + nextRow) * s.width * s.channels
        for column in 0..<s.width {
          scatterToBlocks(
            source + column * s.channels, count: s.channels, slot + (column + p) * lanes,
            blockStride: s.blockRowCount)
        }
        nextRow += 1
      }
      for kh in khRange {
        rows[kh] = UnsafePointer(storage + ((h - p + kh) % k) * s.paddedRowCount)
      }
      return khRange
    }
  }

  // MARK: Forward

  /// `output = depthwise(input, weight) + bias`; `output` is fully overwritten.
  public static func forward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize, op: "depthwiseConv2D")
    convolve(input: input, weight: weight, flipped: false, bias: bias, output: output, shape: s)
  }

  /// Packs the weight (optionally flipped) and bias, then runs the row kernel over all output rows.
  static func convolve(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>, shape s: Shape
  ) {
    guard s.rows > 0 else { return }
    let chunks = s.chunks
    let ringCount = s.kernelSize * s.paddedRowCount
    let biasCount = s.blocks * lanes
    let scratch = Tensor(uninitializedShape: [s.packedWeightCount + biasCount + chunks * ringCount])
    let packedWeight = scratch.buffer.pointer
    let packedBias = packedWeight + s.packedWeightCount
    let rings = packedBias + biasCount
    packWeight(weight, into: packedWeight, shape: s, flipped: flipped)
    packedBias.initialize(repeating: 0, count: biasCount)
    if let bias { packedBias.update(from: bias, count: s.channels) }

    Parallel.forEach(chunks) { chunk in
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: s.kernelSize) { table in
        let rows = table.baseAddress!
        var ring = PaddedRowRing(input: input, shape: s, storage: rings + chunk * ringCount, rows: rows)
        for row in s.chunkRows(chunk) {
          let khRange = ring.prepare(row: row)
          forwardRow(
            rows: UnsafePointer(rows), khRange: khRange, weight: packedWeight, bias: packedBias,
            output: output + row * s.width * s.channels, shape: s)
        }
      }
    }
    withExtendedLifetime(scratch) {}
  }

  /// One output row, channel block by channel block (so the block's `k` padded rows stay
  /// in L1), in tiles of 8 columns. When `W` is not a multiple of 8 the last tile overlaps
  /// the previous one: it recomputes a few columns but keeps every tile at full width.
  @inline(__always)
  static func forwardRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>, shape s: Shape
  ) {
    let k = s.kernelSize, W = s.width, C = s.channels
    for block in 0..<s.blocks {
      let lanesUsed = Swift.min(lanes, C - block * lanes)
      let w = weight + block * k * k * lanes
      let b = load(bias + block * lanes)
      let x = block * s.blockRowCount
      let out = output + block * lanes
      if W >= 8 {
        var w0 = 0
        while w0 + 8 <= W {
          forwardTile(8, rows, khRange, x + w0 * lanes, w, b, out + w0 * C, C, k, lanesUsed)
          w0 += 8
        }
        if w0 < W {
          forwardTile(8, rows, khRange, x + (W - 8) * lanes, w, b, out + (W - 8) * C, C, k, lanesUsed)
        }
      } else if W >= 4 {
        forwardTile(4, rows, khRange, x, w, b, out, C, k, lanesUsed)
        if W > 4 {
          forwardTile(4, rows, khRange, x + (W - 4) * lanes, w, b, out + (W - 4) * C, C, k, lanesUsed)
        }
      } else {
        for w0 in 0..<W {
          forwardTile(1, rows, khRange, x + w0 * lanes, w, b, out + w0 * C, C, k, lanesUsed)
        }
      }
    }
  }

  /// `T` (1, 4 or 8; a constant after inlining) output columns of one channel block.
  ///
  /// - Parameters:
  ///   - x: offset of the first column in a padded blocked row (padded column
  ///     `w + j` holds input column `w + j − p`, so tap `j` of output `w` is at `+ j · 8`).
  ///   - weight: the block's packed `[k][k][8]` weights.
  ///   - output: the first output column's NHWC position for this block.
  @inline(__always)
  static func forwardTile(
    _ T: Int, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
    _ weight: UnsafePointer<Float>, _ bias: Vector, _ output: UnsafeMutablePointer<Float>,
    _ C: Int, _ k: Int, _ lanesUsed: Int
  ) {
    var a0 = bias, a1 = bias, a2 = bias, a3 = bias, a4 = bias, a5 = bias, a6 = bias, a7 = bias
    for kh in khRange {
      var xp = rows[kh] + x
      var wp = weight + kh &* k &* lanes
      for _ in 0..<k {
        let wv = load(wp)
        a0 = multiplyAdd(a0, load(xp), wv)
        if T > 1 {
          a1 = multiplyAdd(a1, load(xp + 8), wv)
          a2 = multiplyAdd(a2, load(xp + 16), wv)
          a3 = multiplyAdd(a3, load(xp + 24), wv)
        }
        if T > 4 {
          a4 = multiplyAdd(a4, load(xp + 32), wv)
          a5 = multiplyAdd(a5, load(xp + 40), wv)
          a6 = multiplyAdd(a6, load(xp + 48), wv)
          a7 = multiplyAdd(a7, load(xp + 56), wv)
        }
        xp += lanes
        wp += lanes
      }
    }
    store(a0, output, lanes: lanesUsed)
    if T > 1 {
      store(a1, output + C, lanes: lanesUsed)
      store(a2, output + 2 * C, lanes: lanesUsed)
      store(a3, output + 3 * C, lanes: lanesUsed)
    }
    if T > 4 {
      store(a4, output + 4 * C, lanes: lanesUsed)
      store(a5, output + 5 * C, lanes: lanesUsed)
      store(a6, output + 6 * C, lanes: lanesUsed)
      store(a7, output + 7 * C, lanes: lanesUsed)
    }
  }

  // MARK: Backward

  /// `inputGradient = ∂L/∂x`, the "same" correlation of `outputGradient` with the kernel
  /// flipped in both spatial directions:
  /// `dx[n, h, w, c] = Σ_{i,j} dy[n, h + i − p, w + j − p, c] · W[k−1−i, k−1−j, c]`
  /// (the forward kernel with the weight packed mirrored). `inputGradient` is overwritten.
  public static func backwardInput(
    outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    convolve(input: outputGradient, weight: weight, flipped: true, bias: nil, output: inputGradient, shape: s)
  }

  /// `weightGradient[i, j, c] = Σ_{n,h,w} x[n, h + i − p, w + j − p, c] · dy[n, h, w, c]` and,
  /// when `biasGradient` is given, `biasGradient[c] = Σ_{n,h,w} dy[n, h, w, c]`; both are overwritten.
  ///
  /// Threads take disjoint ranges of output rows and sum into private packed partials,
  /// which are added up in a fixed order at the end (no races, no dependence on timing).
  public static func backwardWeight(
    input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    let k = s.kernelSize, C = s.channels
    let chunks = s.chunks
    let ringCount = k * s.paddedRowCount
    let gradientRowCount = s.blocks * s.width * lanes
    let partialCount = s.packedWeightCount + s.blocks * lanes
    let perChunk = ringCount + gradientRowCount + partialCount
    let scratch = Tensor(uninitializedShape: [chunks * perChunk])
    let scratchBase = scratch.buffer.pointer
    let hasBias = biasGradient != nil

    Parallel.forEach(chunks) { chunk in
      let ringStorage = scratchBase + chunk * perChunk
      let gradientRow = ringStorage + ringCount
      let partial = gradientRow + gradientRowCount
      partial.initialize(repeating: 0, count: partialCount)
      // Unused lanes of a partial last block must read as zero.
      gradientRow.initialize(repeating: 0, count: gradientRowCount)
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: k) { table in
        let rows = table.baseAddress!
        var ring = PaddedRowRing(input: input, shape: s, storage: ringStorage, rows: rows)
        for row in s.chunkRows(chunk) {
          let khRange = ring.prepare(row: row)
          let dy = outputGradient + row * s.width * C
          for column in 0..<s.width {
            scatterToBlocks(dy + column * C, count: C, gradientRow + column * lanes, blockStride: s.width * lanes)
          }
          weightRow(
            rows: UnsafePointer(rows), khRange: khRange, outputGradient: gradientRow, partial: partial,
            shape: s, hasBias: hasBias)
        }
      }
    }

    // Fixed-order reduction of the per-thread partials, then unpacking to [k, k, C] and [C].
    let total = scratchBase + perChunk - partialCount
    for chunk in 1..<chunks {
      addInPlace(total, scratchBase + (chunk + 1) * perChunk - partialCount, count: partialCount)
    }
    for tap in 0..<(k * k) {
      for c in 0..<C {
        weightGradient[tap * C + c] = total[((c / lanes) * k * k + tap) * lanes + c % lanes]
      }
    }
    biasGradient?.update(from: total + s.packedWeightCount, count: C)
    withExtendedLifetime(scratch) {}
  }

  /// Adds one output row's contribution to the packed partials. For each channel block
  /// and kernel row, up to 8 kernel columns are accumulated in registers over the whole
  /// row; one `dy` load serves all of them (`taps + 1` loads per `taps` FMAs).
  @inline(__always)
  static func weightRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
    partial: UnsafeMutablePointer<Float>, shape s: Shape, hasBias: Bool
  ) {
    let k = s.kernelSize, W = s.width
    for block in 0..<s.blocks {
      let g = dy + block * W * lanes
      if hasBias {
        let biasPartial = partial + s.packedWeightCount + block * lanes
        var sum = Vector.zero
        for w in 0..<W { sum += load(g + w * lanes) }
        store(load(biasPartial) + sum, biasPartial)
      }
      for kh in khRange {
        let x = rows[kh] + block * s.blockRowCount
        let dw = partial + (block * k + kh) * k * lanes
        var kw0 = 0
        while kw0 < k {
          let taps = Swift.min(8, k - kw0)
          let xk = x + kw0 * lanes, dwk = dw + kw0 * lanes
          // Constant tap counts let the compiler drop the unused accumulators.
          switch taps {
          case 7: weightTile(7, xk, g, dwk, W)
          case 5: weightTile(5, xk, g, dwk, W)
          case 3: weightTile(3, xk, g, dwk, W)
          case 8: weightTile(8, xk, g, dwk, W)
          case 1: weightTile(1, xk, g, dwk, W)
          default: weightTile(taps, xk, g, dwk, W)
          }
          kw0 += taps
        }
      }
    }
  }

  /// `dw[j] += Σ_w x[w + j] · dy[w]` for `j < taps`, over one blocked row.
  @inline(__always)
  static func weightTile(
    _ taps: Int, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
    _ width: Int
  ) {
    var a0 = Vector.zero, a1 = Vector.zero, a2 = Vector.zero, a3 = Vector.zero
    var a4 = Vector.zero, a5 = Vector.zero, a6 = Vector.zero, a7 = Vector.zero
    var xp = x, gp = dy
    for _ in 0..<width {
      let g = load(gp)
      a0 = multiplyAdd(a0, load(xp), g)
      if taps > 1 { a1 = multiplyAdd(a1, load(xp + 8), g) }
      if taps > 2 { a2 = multiplyAdd(a2, load(xp + 16), g) }
      if taps > 3 { a3 = multiplyAdd(a3, load(xp + 24), g) }
      if taps > 4 { a4 = multiplyAdd(a4, load(xp + 32), g) }
      if taps > 5 { a5 = multiplyAdd(a5, load(xp + 40), g) }
      if taps > 6 { a6 = multiplyAdd(a6, load(xp + 48), g) }
      if taps > 7 { a7 = multiplyAdd(a7, load(xp + 56), g) }
      xp += lanes
      gp += lanes
    }
    store(load(dw) + a0, dw)
    if taps > 1 { store(load(dw + 8) + a1, dw + 8) }
    if taps > 2 { store(load(dw + 16) + a2, dw + 16) }
    if taps > 3 { store(load(dw + 24) + a3, dw + 24) }
    if taps > 4 { store(load(dw + 32) + a4, dw + 32) }
    if taps > 5 { store(load(dw + 40) + a5, dw + 40) }
    if taps > 6 { store(load(dw + 48) + a6, dw + 48) }
    if taps > 7 { store(load(dw + 56) + a7, dw + 56) }
  }
}

/// A run of `Float` lanes that the convolution kernels are generic over.
///
/// One loop body serves full vector blocks of channels (`SIMD8<Float>`, one ymm
/// register with AVX2) and the channel tails (`SIMD4<Float>`, then `Float`), so a
/// channel count that is not a multiple of 8 needs no separate code. The kernels
/// are `@inline(__always)` and called with concrete types, so every use is
/// specialized and these requirements compile to single vector instructions.
protocol ChannelVector {
  static var zero: Self { get }
  /// Loads lanes from `pointer` (no alignment required).
  static func load(from pointer: UnsafePointer<Float>) -> Self
  /// Stores the lanes to `pointer` (no alignment required).
  func store(to pointer: UnsafeMutablePointer<Float>)
  /// `self + a · b`, fused where the target has FMA.
  func adding(_ a: Self, times b: Self) -> Self
  static func + (lhs: Self, rhs: Self) -> Self
}

extension SIMD8: ChannelVector where Scalar == Float {
  @inline(__always) static func load(from pointer: UnsafePointer<Float>) -> Self {
    UnsafeRawPointer(pointer).loadUnaligned(as: Self.self)
  }
  @inline(__always) func store(to pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: self, as: Self.self)
  }
  @inline(__always) func adding(_ a: Self, times b: Self) -> Self {
    #if QUADRANET_PORTABLE
      // Without a known FMA unit `addingProduct` becomes a libm `fmaf` call per lane.
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}

extension SIMD4: ChannelVector where Scalar == Float {
  @inline(__always) static func load(from pointer: UnsafePointer<Float>) -> Self {
    UnsafeRawPointer(pointer).loadUnaligned(as: Self.self)
  }
  @inline(__always) func store(to pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: self, as: Self.self)
  }
  @inline(__always) func adding(_ a: Self, times b: Self) -> Self {
    #if QUADRANET_PORTABLE
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}

extension Float: ChannelVector {
  @inline(__always) static func load(from pointer: UnsafePointer<Float>) -> Float { pointer.pointee }
  @inline(__always) func store(to pointer: UnsafeMutablePointer<Float>) { pointer.pointee = self }
  @inline(__always) func adding(_ a: Float, times b: Float) -> Float {
    #if QUADRANET_PORTABLE
      return self + a * b
    #else
      return addingProduct(a, b)
    #endif
  }
}

/// Calls `body` with the channel offset and the widest vector type that fits, for
/// channels `range`: blocks of 8, then one block of 4, then single channels.
@inline(__always)
func forEachChannelBlock(
  _ range: Range<Int>,
  _ body8: (Int) -> Void, _ body4: (Int) -> Void, _ body1: (Int) -> Void
) {
  var c = range.lowerBound
  while c + 8 <= range.upperBound {
    body8(c)
    c += 8
  }
  if c + 4 <= range.upperBound {
    body4(c)
    c += 4
  }
  while c < range.upperBound {
    body1(c)
    c += 1
  }
}

/// The input rows one output row of a "same" depthwise convolution reads, with
/// their horizontal zero padding, kept in a ring of `k` padded rows.
///
/// Copying each input row once into a zero-bordered row (width `W + 2p`) means
/// the inner loops never test column bounds: every output column is an
/// "interior" column. Rows above and below the image are not materialized; the
/// caller restricts the kernel rows instead (``prepare(row:)`` returns the range).
struct PaddedRowRing {
  let input: UnsafePointer<Float>
  let height: Int, width: Int, channels: Int, kernelSize: Int
  /// `k` padded rows of `(W + 2p) · C` floats.
  let storage: UnsafeMutablePointer<Float>
  /// For each kernel row `kh`, the padded row it reads for the current output row.
  let rows: UnsafeMutablePointer<UnsafePointer<Float>>
  private var image = -1
  private var nextRow = 0

  var padding: Int { kernelSize / 2 }
  var paddedRowCount: Int { (width + 2 * padding) * channels }

  init(
    input: UnsafePointer<Float>, height: Int, width: Int, channels: Int, kernelSize: Int,
    storage: UnsafeMutablePointer<Float>, rows: UnsafeMutablePointer<UnsafePointer<Float>>
  ) {
    self.input = input
    self.height = height
    self.width = width
    self.channels = channels
    self.kernelSize = kernelSize
    self.storage = storage
    self.rows = rows
    // Only the pad columns must be zero; the interior is overwritten by every row copy.
    storage.initialize(repeating: 0, count: kernelSize * paddedRowCount)
  }

  /// Loads the input rows that output row `row` (flattened `n · H + h`) needs and
  /// points ``rows`` at them; returns the kernel rows that fall inside the image.
  mutating func prepare(row: Int) -> Range<Int> {
    let n = row / height, h = row % height, p = padding, k = kernelSize
    if n != image {
      image = n
      nextRow = 0
    }
    let khRange = Swift.max(0, p - h)..<Swift.min(k, height + p - h)
    nextRow = Swift.max(nextRow, h - p + khRange.lowerBound)
    let rowCount = width * channels
    while nextRow < h - p + khRange.upperBound {
      let slot = storage + (nextRow % k) * paddedRowCount + p * channels
      slot.update(from: input + (n * height + nextRow) * rowCount, count: rowCount)
      nextRow += 1
    }
    for kh in khRange {
      rows[kh] = UnsafePointer(storage + ((h - p + kh) % k) * paddedRowCount)
    }
    return khRange
  }
}

/// Depthwise 2-D convolution, stride 1, "same" zero padding, channels-last.
///
/// `y[n, h, w, c] = b[c] + Σ_{i,j < k} x[n, h + i − p, w + j − p, c] · W[i, j, c]`
/// with `p = k / 2` (`k` odd), input `[N, H, W, C]`, weight `[k, k, C]`, bias `[C]`.
///
/// The weight has channels innermost, so the inner loops run over 8 channels at a
/// time with contiguous loads of input, weight and output. Each step keeps 8
/// output columns × 8 channels of accumulators in registers and reuses one loaded
/// weight vector for all of them, so it needs 9 loads per 8 FMAs.
public enum DepthwiseConvolution {
  /// Channels processed together for one tile of output columns, so the input
  /// patch (`k` rows × (tile + k − 1) columns) and the weights stay in L1.
  static let channelGroup = 64

  static func validate(height: Int, width: Int, channels: Int, kernelSize: Int, op: String) {
    precondition(kernelSize >= 1 && kernelSize % 2 == 1, "\(op): kernel size must be odd and positive, got \(kernelSize)")
    precondition(height >= 1 && width >= 1 && channels >= 1, "\(op): empty image \(height)×\(width)×\(channels)")
  }

  /// Splits `rows` output rows into per-thread chunks (each with its own scratch) and
  /// calls `body(chunk, rowRange)`.
  static func forEachRowChunk(
    rows: Int, flopsPerRow: Int, _ body: (_ chunk: Int, _ rows: Range<Int>) -> Void
  ) -> Int {
    let minimumRows = Swift.max(1, (1 << 18) / Swift.max(flopsPerRow, 1))
    let chunks = Swift.max(1, Swift.min(Parallel.threadCount, rows / minimumRows))
    Parallel.forEach(chunks) { chunk in
      body(chunk, (rows * chunk / chunks)..<(rows * (chunk + 1) / chunks))
    }
    return chunks
  }

  /// Number of per-thread chunks ``forEachRowChunk(rows:flopsPerRow:_:)`` will use.
  static func chunkCount(rows: Int, flopsPerRow: Int) -> Int {
    let minimumRows = Swift.max(1, (1 << 18) / Swift.max(flopsPerRow, 1))
    return Swift.max(1, Swift.min(Parallel.threadCount, rows / minimumRows))
  }

  // MARK: Forward

  /// `output = depthwise(input, weight) + bias`; `output` is fully overwritten.
  public static func forward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize k: Int
  ) {
    validate(height: height, width: width, channels: channels, kernelSize: k, op: "depthwiseConv2D")
    let rows = batch * height
    let flopsPerRow = 2 * width * channels * k * k
    let chunks = chunkCount(rows: rows, flopsPerRow: flopsPerRow)
    let p = k / 2
    let ringCount = k * (width + 2 * p) * channels
    let scratch = Tensor(uninitializedShape: [chunks, ringCount])
    let scratchBase = scratch.buffer.pointer
    _ = forEachRowChunk(rows: rows, flopsPerRow: flopsPerRow) { chunk, rowRange in
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: k) { table in
        var ring = PaddedRowRing(
          input: input, height: height, width: width, channels: channels, kernelSize: k,
          storage: scratchBase + chunk * ringCount, rows: table.baseAddress!)
        for row in rowRange {
          let khRange = ring.prepare(row: row)
          forwardRow(
            rows: UnsafePointer(table.baseAddress!), khRange: khRange, weight: weight, bias: bias,
            output: output + row * width * channels, width: width, channels: channels, kernelSize: k)
        }
      }
    }
    withExtendedLifetime(scratch) {}
  }

  /// One output row: tiles of 8 columns (the last tile overlaps the previous one
  /// when `W` is not a multiple of 8, which recomputes a few columns but keeps every
  /// tile at full register width), channel groups, then channel blocks.
  @inline(__always)
  static func forwardRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>, width: Int, channels: Int, kernelSize k: Int
  ) {
    var groupStart = 0
    while groupStart < channels {
      let group = groupStart..<Swift.min(channels, groupStart + channelGroup)
      groupStart = group.upperBound
      forEachColumnTile(width: width) { w0, tile in
        switch tile {
        case 8:
          forEachChannelBlock(
            group,
            { c in forwardTile(SIMD8<Float>.self, 8, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(SIMD4<Float>.self, 8, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(Float.self, 8, rows, khRange, w0, c, weight, bias, output, channels, k) })
        case 4:
          forEachChannelBlock(
            group,
            { c in forwardTile(SIMD8<Float>.self, 4, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(SIMD4<Float>.self, 4, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(Float.self, 4, rows, khRange, w0, c, weight, bias, output, channels, k) })
        default:
          forEachChannelBlock(
            group,
            { c in forwardTile(SIMD8<Float>.self, 1, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(SIMD4<Float>.self, 1, rows, khRange, w0, c, weight, bias, output, channels, k) },
            { c in forwardTile(Float.self, 1, rows, khRange, w0, c, weight, bias, output, channels, k) })
        }
      }
    }
  }

  /// Calls `body(firstColumn, tileWidth)` with tiles of 8, 4 or 1 columns covering `0..<width`.
  /// Tiles may overlap (each computes its columns from scratch, so overlap only repeats work).
  @inline(__always)
  static func forEachColumnTile(width: Int, _ body: (Int, Int) -> Void) {
    if width >= 8 {
      var w0 = 0
      while w0 + 8 <= width {
        body(w0, 8)
        w0 += 8
      }
      if w0 < width { body(width - 8, 8) }
    } else if width >= 4 {
      body(0, 4)
      if width > 4 { body(width - 4, 4) }
    } else {
      for w0 in 0..<width { body(w0, 1) }
    }
  }

  /// `T` (1, 4 or 8, a constant after inlining) output columns from `w0`, channels
  /// `c..<c + V.lanes`: accumulators stay in registers over all `k × k` taps, and
  /// each loaded weight vector is used `T` times.
  @inline(__always)
  static func forwardTile<V: ChannelVector>(
    _: V.Type, _ T: Int, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>,
    _ w0: Int, _ c: Int, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ output: UnsafeMutablePointer<Float>, _ C: Int, _ k: Int
  ) {
    let b = bias.map { V.load(from: $0 + c) } ?? V.zero
    var a0 = b, a1 = b, a2 = b, a3 = b, a4 = b, a5 = b, a6 = b, a7 = b
    let column = w0 * C + c
    for kh in khRange {
      // Padded column w0 + kw holds input column w0 + kw − p.
      let xr = rows[kh] + column
      let wr = weight + kh * k * C + c
      for kw in 0..<k {
        let wv = V.load(from: wr + kw * C)
        let xp = xr + kw * C
        a0 = a0.adding(V.load(from: xp), times: wv)
        if T > 1 {
          a1 = a1.adding(V.load(from: xp + C), times: wv)
          a2 = a2.adding(V.load(from: xp + 2 * C), times: wv)
          a3 = a3.adding(V.load(from: xp + 3 * C), times: wv)
        }
        if T > 4 {
          a4 = a4.adding(V.load(from: xp + 4 * C), times: wv)
          a5 = a5.adding(V.load(from: xp + 5 * C), times: wv)
          a6 = a6.adding(V.load(from: xp + 6 * C), times: wv)
          a7 = a7.adding(V.load(from: xp + 7 * C), times: wv)
        }
      }
    }
    let o = output + column
    a0.store(to: o)
    if T > 1 {
      a1.store(to: o + C)
      a2.store(to: o + 2 * C)
      a3.store(to: o + 3 * C)
    }
    if T > 4 {
      a4.store(to: o + 4 * C)
      a5.store(to: o + 5 * C)
      a6.store(to: o + 6 * C)
      a7.store(to: o + 7 * C)
    }
  }

  // MARK: Backward

  /// `inputGradient = ∂L/∂x`: the "same" correlation of `outputGradient` with the
  /// kernel flipped in both spatial directions,
  /// `dx[n, h, w, c] = Σ_{i,j} dy[n, h + i − p, w + j − p, c] · W[k−1−i, k−1−j, c]`,
  /// which is the forward kernel applied to a flipped copy of the weight.
  public static func backwardInput(
    outputGradient: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize k: Int
  ) {
    validate(height: height, width: width, channels: channels, kernelSize: k, op: "depthwiseConv2D backward")
    let flipped = Tensor(uninitializedShape: [k, k, channels])
    let f = flipped.buffer.pointer
    for kh in 0..<k {
      for kw in 0..<k {
        (f + (kh * k + kw) * channels).update(
          from: weight + ((k - 1 - kh) * k + (k - 1 - kw)) * channels, count: channels)
      }
    }
    forward(
      input: outputGradient, weight: f, bias: nil, output: inputGradient,
      batch: batch, height: height, width: width, channels: channels, kernelSize: k)
    withExtendedLifetime(flipped) {}
  }

  /// `weightGradient[i, j, c] = Σ_{n,h,w} x[n, h + i − p, w + j − p, c] · dy[n, h, w, c]`
  /// and, when `biasGradient` is given, `biasGradient[c] = Σ_{n,h,w} dy[n, h, w, c]`.
  /// Both are overwritten.
  ///
  /// Threads take disjoint ranges of output rows and sum into private partials,
  /// which are added up at the end (fixed order, so results do not depend on timing).
  public static func backwardWeight(
    input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize k: Int
  ) {
    validate(height: height, width: width, channels: channels, kernelSize: k, op: "depthwiseConv2D backward")
    let rows = batch * height
    let flopsPerRow = 2 * width * channels * k * k
    let chunks = chunkCount(rows: rows, flopsPerRow: flopsPerRow)
    let p = k / 2
    let ringCount = k * (width + 2 * p) * channels
    let weightCount = k * k * channels
    let partialCount = weightCount + channels
    let scratch = Tensor(uninitializedShape: [chunks, ringCount + partialCount])
    let scratchBase = scratch.buffer.pointer
    let hasBias = biasGradient != nil
    _ = forEachRowChunk(rows: rows, flopsPerRow: flopsPerRow) { chunk, rowRange in
      let base = scratchBase + chunk * (ringCount + partialCount)
      let partial = base + ringCount
      partial.initialize(repeating: 0, count: partialCount)
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: k) { table in
        var ring = PaddedRowRing(
          input: input, height: height, width: width, channels: channels, kernelSize: k,
          storage: base, rows: table.baseAddress!)
        for row in rowRange {
          let khRange = ring.prepare(row: row)
          let dy = outputGradient + row * width * channels
          weightRow(
            rows: UnsafePointer(table.baseAddress!), khRange: khRange, outputGradient: dy,
            partial: partial, width: width, channels: channels, kernelSize: k)
          if hasBias {
            biasRow(outputGradient: dy, partial: partial + weightCount, width: width, channels: channels)
          }
        }
      }
    }
    // Fixed-order reduction of the per-thread partials.
    weightGradient.update(from: scratchBase + ringCount, count: weightCount)
    biasGradient?.update(from: scratchBase + ringCount + weightCount, count: channels)
    for chunk in 1..<Swift.max(chunks, 1) {
      let partial = scratchBase + chunk * (ringCount + partialCount) + ringCount
      addInPlace(weightGradient, partial, count: weightCount)
      if let biasGradient { addInPlace(biasGradient, partial + weightCount, count: channels) }
    }
    withExtendedLifetime(scratch) {}
  }

  @inline(__always)
  static func addInPlace(_ target: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
    forEachChannelBlock(
      0..<count,
      { i in (SIMD8<Float>.load(from: target + i) + SIMD8<Float>.load(from: source + i)).store(to: target + i) },
      { i in (SIMD4<Float>.load(from: target + i) + SIMD4<Float>.load(from: source + i)).store(to: target + i) },
      { i in target[i] += source[i] })
  }

  /// Adds one output row's contribution to the weight-gradient partial: for each kernel
  /// row and channel block, up to 8 kernel columns at a time are accumulated in
  /// registers over the whole row (one `dy` load serves all of them).
  @inline(__always)
  static func weightRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
    partial: UnsafeMutablePointer<Float>, width: Int, channels: Int, kernelSize k: Int
  ) {
    var groupStart = 0
    while groupStart < channels {
      let group = groupStart..<Swift.min(channels, groupStart + channelGroup)
      groupStart = group.upperBound
      for kh in khRange {
        let x = rows[kh]
        var kw0 = 0
        while kw0 < k {
          let taps = Swift.min(8, k - kw0)
          let xk = x + kw0 * channels
          let dw = partial + (kh * k + kw0) * channels
          // Constant tap counts let the compiler drop the unused accumulators.
          switch taps {
          case 7: weightBlocks(7, group, xk, dy, dw, width, channels)
          case 5: weightBlocks(5, group, xk, dy, dw, width, channels)
          case 3: weightBlocks(3, group, xk, dy, dw, width, channels)
          case 8: weightBlocks(8, group, xk, dy, dw, width, channels)
          case 1: weightBlocks(1, group, xk, dy, dw, width, channels)
          default: weightBlocks(taps, group, xk, dy, dw, width, channels)
          }
          kw0 += taps
        }
      }
    }
  }

  @inline(__always)
  static func weightBlocks(
    _ taps: Int, _ group: Range<Int>, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
    _ dw: UnsafeMutablePointer<Float>, _ width: Int, _ C: Int
  ) {
    forEachChannelBlock(
      group,
      { c in weightTile(SIMD8<Float>.self, taps, x + c, dy + c, dw + c, width, C) },
      { c in weightTile(SIMD4<Float>.self, taps, x + c, dy + c, dw + c, width, C) },
      { c in weightTile(Float.self, taps, x + c, dy + c, dw + c, width, C) })
  }

  /// `dw[j] += Σ_w x[w + j] · dy[w]` for `j < taps`, over one row, one channel block
  /// (`x` is the padded input row shifted to the first tap).
  @inline(__always)
  static func weightTile<V: ChannelVector>(
    _: V.Type, _ taps: Int, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
    _ dw: UnsafeMutablePointer<Float>, _ width: Int, _ C: Int
  ) {
    var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero
    var a4 = V.zero, a5 = V.zero, a6 = V.zero, a7 = V.zero
    for w in 0..<width {
      let g = V.load(from: dy + w * C)
      let xp = x + w * C
      a0 = a0.adding(V.load(from: xp), times: g)
      if taps > 1 { a1 = a1.adding(V.load(from: xp + C), times: g) }
      if taps > 2 { a2 = a2.adding(V.load(from: xp + 2 * C), times: g) }
      if taps > 3 { a3 = a3.adding(V.load(from: xp + 3 * C), times: g) }
      if taps > 4 { a4 = a4.adding(V.load(from: xp + 4 * C), times: g) }
      if taps > 5 { a5 = a5.adding(V.load(from: xp + 5 * C), times: g) }
      if taps > 6 { a6 = a6.adding(V.load(from: xp + 6 * C), times: g) }
      if taps > 7 { a7 = a7.adding(V.load(from: xp + 7 * C), times: g) }
    }
    (V.load(from: dw) + a0).store(to: dw)
    if taps > 1 { (V.load(from: dw + C) + a1).store(to: dw + C) }
    if taps > 2 { (V.load(from: dw + 2 * C) + a2).store(to: dw + 2 * C) }
    if taps > 3 { (V.load(from: dw + 3 * C) + a3).store(to: dw + 3 * C) }
    if taps > 4 { (V.load(from: dw + 4 * C) + a4).store(to: dw + 4 * C) }
    if taps > 5 { (V.load(from: dw + 5 * C) + a5).store(to: dw + 5 * C) }
    if taps > 6 { (V.load(from: dw + 6 * C) + a6).store(to: dw + 6 * C) }
    if taps > 7 { (V.load(from: dw + 7 * C) + a7).store(to: dw + 7 * C) }
  }

  /// `partial[c] += Σ_w dy[w, c]` over one row.
  @inline(__always)
  static func biasRow(
    outputGradient dy: UnsafePointer<Float>, partial: UnsafeMutablePointer<Float>, width: Int, channels: Int
  ) {
    forEachChannelBlock(
      0..<channels,
      { c in biasTile(SIMD8<Float>.self, dy + c, partial + c, width, channels) },
      { c in biasTile(SIMD4<Float>.self, dy + c, partial + c, width, channels) },
      { c in biasTile(Float.self, dy + c, partial + c, width, channels) })
  }

  @inline(__always)
  static func biasTile<V: ChannelVector>(
    _: V.Type, _ dy: UnsafePointer<Float>, _ partial: UnsafeMutablePointer<Float>, _ width: Int, _ C: Int
  ) {
    var sum = V.zero
    for w in 0..<width { sum = sum + V.load(from: dy + w * C) }
    (V.load(from: partial) + sum).store(to: partial)
  }
}

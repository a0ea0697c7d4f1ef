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
/// ## Tiles
/// A forward tile keeps several output columns × 8 channels of accumulators in
/// registers for all `k × k` taps. The general tile (8 columns, any `k`) reuses each
/// loaded weight vector 8 times (9 loads per 8 FMAs). The 7×7 tile (every model's
/// depthwise layer) also keeps a kernel row's weights in registers and loads each
/// input column once for all outputs it reaches (20 loads per 49 FMAs); the 7-tap
/// weight-gradient tile likewise slides a window of inputs through registers.
/// Both tiles are written once, as ``accumulate(_:_:_:_:_:_:_:)`` on a ``Tile`` of
/// accumulators, so fused kernels over the same rows (``QuadraticDepthwiseConvolution``:
/// `dw_a(x) ⊙ dw_b(x) + dw_c(x)` and its backward) reuse them with their own epilogues.
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

  /// `accumulator += a · b`.
  @inline(__always) static func madd(_ accumulator: inout Vector, _ a: Vector, _ b: Vector) {
    accumulator = multiplyAdd(accumulator, a, b)
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
      opPrecondition(
        kernelSize >= 1 && kernelSize % 2 == 1, "\(op): kernel size must be odd and positive, got \(kernelSize)")
      opPrecondition(
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

    /// The kernel rows `kh` whose input row `h + kh − p` lies inside the image, for output row `h`.
    func kernelRows(at h: Int) -> Range<Int> {
      Swift.max(0, padding - h)..<Swift.min(kernelSize, height + padding - h)
    }

    func chunkRows(_ chunk: Int) -> Range<Int> { chunkRows(chunk, of: chunks) }

    /// Output rows of chunk `chunk` when the rows are split into `count` contiguous chunks.
    func chunkRows(_ chunk: Int, of count: Int) -> Range<Int> {
      (rows * chunk / count)..<(rows * (chunk + 1) / count)
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

  /// Copies `bias` `[C]` (zeros when nil) into `blocks · 8` floats with zero lanes past `C`.
  static func packBias(_ bias: UnsafePointer<Float>?, into packed: UnsafeMutablePointer<Float>, shape s: Shape) {
    packed.initialize(repeating: 0, count: s.blocks * lanes)
    if let bias { packed.update(from: bias, count: s.channels) }
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

  /// Copies one NHWC row (`W` columns of `C` channels) into channel-blocked layout: column
  /// `w` of channel block `b` goes to `target + b · blockStride + w · 8`.
  @inline(__always)
  static func scatterRow(
    _ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, shape s: Shape, blockStride: Int
  ) {
    for column in 0..<s.width {
      scatterToBlocks(source + column * s.channels, count: s.channels, target + column * lanes, blockStride: blockStride)
    }
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
      let khRange = s.kernelRows(at: h)
      nextRow = Swift.max(nextRow, h - p + khRange.lowerBound)
      while nextRow < h - p + khRange.upperBound {
        let slot = storage + (nextRow % k) * s.paddedRowCount
        scatterRow(
          input + (n * H + nextRow) * s.width * s.channels, into: slot + p * lanes, shape: s,
          blockStride: s.blockRowCount)
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
    packBias(bias, into: packedBias, shape: s)

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
  /// in L1), in tiles of 7 (7×7 kernel) or 8, 4 or 1 columns.
  @inline(__always)
  static func forwardRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>, shape s: Shape
  ) {
    let k = s.kernelSize, C = s.channels
    for block in 0..<s.blocks {
      let lanesUsed = Swift.min(lanes, C - block * lanes)
      let w = weight + block * k * k * lanes
      let b = load(bias + block * lanes)
      let x = block * s.blockRowCount
      let out = output + block * lanes
      forEachColumnTile(s) { T, w0 in
        forwardTile(T, rows, khRange, x + w0 * lanes, w, b, out + w0 * C, C, k, lanesUsed)
      }
    }
  }

  /// Calls `body(T, firstColumn)` for the column tiles of one row: 7 wide for the 7×7
  /// kernel (when `W ≥ 7`), otherwise 8, 4 or 1 wide. Each branch passes `T` as a literal,
  /// so inlined tile code is specialized for it.
  @inline(__always)
  static func forEachColumnTile(_ s: Shape, _ body: (Int, Int) -> Void) {
    let W = s.width
    if s.kernelSize == 7 && W >= 7 {
      forEachTile(width: W, tile: 7) { body(7, $0) }
    } else if W >= 8 {
      forEachTile(width: W, tile: 8) { body(8, $0) }
    } else if W >= 4 {
      forEachTile(width: W, tile: 4) { body(4, $0) }
    } else {
      forEachTile(width: W, tile: 1) { body(1, $0) }
    }
  }

  /// Calls `body(firstColumn)` for tiles of `tile` columns covering `0..<width` (`width ≥ tile`).
  /// When `width` is not a multiple of `tile` the last tile overlaps the previous one: it
  /// recomputes a few columns (each tile writes, never accumulates) but runs at full width.
  @inline(__always)
  static func forEachTile(width: Int, tile: Int, _ body: (Int) -> Void) {
    var w0 = 0
    while w0 + tile <= width {
      body(w0)
      w0 += tile
    }
    if w0 < width { body(width - tile) }
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
    var tile = Tile(repeating: bias)
    accumulate(T, &tile, rows, khRange, x, weight, k)
    tile.store(T, output, stride: C, lanes: lanesUsed)
  }

  // MARK: Register tiles

  /// Accumulators for up to 8 output columns × 8 channels of one channel block.
  ///
  /// Named fields (not an array) so that, once the tile functions are inlined with a
  /// constant column count `T`, the used fields live in ymm registers and the others vanish.
  struct Tile {
    var v0, v1, v2, v3, v4, v5, v6, v7: Vector

    @inline(__always) init(repeating value: Vector) {
      (v0, v1, v2, v3, v4, v5, v6, v7) = (value, value, value, value, value, value, value, value)
    }

    /// Loads `T` columns of a channel-blocked row (vectors 8 floats apart).
    @inline(__always) init(_ T: Int, loading p: UnsafePointer<Float>) {
      self.init(repeating: .zero)
      v0 = load(p)
      if T > 1 { v1 = load(p + 8); v2 = load(p + 16); v3 = load(p + 24) }
      if T > 4 { v4 = load(p + 32); v5 = load(p + 40); v6 = load(p + 48) }
      if T > 7 { v7 = load(p + 56) }
    }

    /// Stores the first `T` columns `stride` floats apart, `lanes` lanes each (NHWC output).
    @inline(__always) func store(_ T: Int, _ p: UnsafeMutablePointer<Float>, stride: Int, lanes count: Int) {
      DepthwiseConvolution.store(v0, p, lanes: count)
      if T > 1 {
        DepthwiseConvolution.store(v1, p + stride, lanes: count)
        DepthwiseConvolution.store(v2, p + 2 * stride, lanes: count)
        DepthwiseConvolution.store(v3, p + 3 * stride, lanes: count)
      }
      if T > 4 {
        DepthwiseConvolution.store(v4, p + 4 * stride, lanes: count)
        DepthwiseConvolution.store(v5, p + 5 * stride, lanes: count)
        DepthwiseConvolution.store(v6, p + 6 * stride, lanes: count)
      }
      if T > 7 { DepthwiseConvolution.store(v7, p + 7 * stride, lanes: count) }
    }

    /// Stores the first `T` columns into a channel-blocked row (full vectors 8 floats apart).
    @inline(__always) func store(_ T: Int, blocked p: UnsafeMutablePointer<Float>) {
      DepthwiseConvolution.store(v0, p)
      if T > 1 {
        DepthwiseConvolution.store(v1, p + 8)
        DepthwiseConvolution.store(v2, p + 16)
        DepthwiseConvolution.store(v3, p + 24)
      }
      if T > 4 {
        DepthwiseConvolution.store(v4, p + 32)
        DepthwiseConvolution.store(v5, p + 40)
        DepthwiseConvolution.store(v6, p + 48)
      }
      if T > 7 { DepthwiseConvolution.store(v7, p + 56) }
    }

    /// `a ⊙ b + c`, column by column.
    @inline(__always) static func multiplyAdd(_ a: Tile, _ b: Tile, _ c: Tile) -> Tile {
      var r = c
      r.v0 = DepthwiseConvolution.multiplyAdd(c.v0, a.v0, b.v0)
      r.v1 = DepthwiseConvolution.multiplyAdd(c.v1, a.v1, b.v1)
      r.v2 = DepthwiseConvolution.multiplyAdd(c.v2, a.v2, b.v2)
      r.v3 = DepthwiseConvolution.multiplyAdd(c.v3, a.v3, b.v3)
      r.v4 = DepthwiseConvolution.multiplyAdd(c.v4, a.v4, b.v4)
      r.v5 = DepthwiseConvolution.multiplyAdd(c.v5, a.v5, b.v5)
      r.v6 = DepthwiseConvolution.multiplyAdd(c.v6, a.v6, b.v6)
      r.v7 = DepthwiseConvolution.multiplyAdd(c.v7, a.v7, b.v7)
      return r
    }

    /// `a ⊙ b`, column by column.
    @inline(__always) static func * (a: Tile, b: Tile) -> Tile {
      multiplyAdd(a, b, Tile(repeating: .zero))
    }
  }

  /// Adds the convolution of `T` output columns (1, 4, 7 or 8; 7 only with `k = 7`) of one
  /// channel block to `tile`: `tile[t] += Σ_{kh ∈ khRange, j < k} rows[kh][x + (t + j) · 8] · weight[kh][j]`.
  ///
  /// Every tile function (plain, fused quadratic, and the input gradients) is built from this,
  /// so the inner loops exist once.
  @inline(__always)
  static func accumulate(
    _ T: Int, _ tile: inout Tile, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
    _ weight: UnsafePointer<Float>, _ k: Int
  ) {
    if T == 7 {
      accumulate7(&tile, rows, khRange, x, weight)
      return
    }
    var a0 = tile.v0, a1 = tile.v1, a2 = tile.v2, a3 = tile.v3
    var a4 = tile.v4, a5 = tile.v5, a6 = tile.v6, a7 = tile.v7
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
    (tile.v0, tile.v1, tile.v2, tile.v3, tile.v4, tile.v5, tile.v6, tile.v7) = (a0, a1, a2, a3, a4, a5, a6, a7)
  }

  /// ``accumulate(_:_:_:_:_:_:_:)`` for the 7×7 kernel and 7 output columns.
  ///
  /// Per kernel row the 7 weight vectors stay in registers and each of the 13 input
  /// columns the tile reads is loaded once and multiplied into every output it reaches
  /// (input column `i` meets output `j` through tap `i − j`): 20 loads per 49 FMAs instead
  /// of 56, so the FMA unit, not the load ports, sets the pace. 7 accumulators + 7 weights
  /// + 1 input use 15 of the 16 ymm registers.
  @inline(__always)
  static func accumulate7(
    _ tile: inout Tile, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
    _ weight: UnsafePointer<Float>
  ) {
    var a0 = tile.v0, a1 = tile.v1, a2 = tile.v2, a3 = tile.v3, a4 = tile.v4, a5 = tile.v5, a6 = tile.v6
    for kh in khRange {
      let xp = rows[kh] + x, wp = weight + kh &* 56
      let w0 = load(wp), w1 = load(wp + 8), w2 = load(wp + 16), w3 = load(wp + 24)
      let w4 = load(wp + 32), w5 = load(wp + 40), w6 = load(wp + 48)
      // Input column i (at xp + 8i) reaches outputs j = i − 6 ... i through tap i − j.
      var v = load(xp); madd(&a0, v, w0)
      v = load(xp + 8); madd(&a0, v, w1); madd(&a1, v, w0)
      v = load(xp + 16); madd(&a0, v, w2); madd(&a1, v, w1); madd(&a2, v, w0)
      v = load(xp + 24); madd(&a0, v, w3); madd(&a1, v, w2); madd(&a2, v, w1); madd(&a3, v, w0)
      v = load(xp + 32); madd(&a0, v, w4); madd(&a1, v, w3); madd(&a2, v, w2); madd(&a3, v, w1)
                         madd(&a4, v, w0)
      v = load(xp + 40); madd(&a0, v, w5); madd(&a1, v, w4); madd(&a2, v, w3); madd(&a3, v, w2)
                         madd(&a4, v, w1); madd(&a5, v, w0)
      v = load(xp + 48); madd(&a0, v, w6); madd(&a1, v, w5); madd(&a2, v, w4); madd(&a3, v, w3)
                         madd(&a4, v, w2); madd(&a5, v, w1); madd(&a6, v, w0)
      v = load(xp + 56); madd(&a1, v, w6); madd(&a2, v, w5); madd(&a3, v, w4); madd(&a4, v, w3)
                         madd(&a5, v, w2); madd(&a6, v, w1)
      v = load(xp + 64); madd(&a2, v, w6); madd(&a3, v, w5); madd(&a4, v, w4); madd(&a5, v, w3)
                         madd(&a6, v, w2)
      v = load(xp + 72); madd(&a3, v, w6); madd(&a4, v, w5); madd(&a5, v, w4); madd(&a6, v, w3)
      v = load(xp + 80); madd(&a4, v, w6); madd(&a5, v, w5); madd(&a6, v, w4)
      v = load(xp + 88); madd(&a5, v, w6); madd(&a6, v, w5)
      v = load(xp + 96); madd(&a6, v, w6)
    }
    (tile.v0, tile.v1, tile.v2, tile.v3, tile.v4, tile.v5, tile.v6) = (a0, a1, a2, a3, a4, a5, a6)
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
    let partialCount = Self.partialCount(s)
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
          scatterRow(outputGradient + row * s.width * C, into: gradientRow, shape: s, blockStride: s.width * lanes)
          weightRow(
            rows: UnsafePointer(rows), khRange: khRange, outputGradient: gradientRow,
            gradientBlockStride: s.width * lanes, partial: partial, shape: s, hasBias: hasBias)
        }
      }
    }

    reducePartials(
      first: scratchBase + perChunk - partialCount, stride: perChunk, chunks: chunks, shape: s,
      weightGradient: weightGradient, biasGradient: biasGradient)
    withExtendedLifetime(scratch) {}
  }

  /// Both gradients in one pass over the rows: `inputGradient` as in
  /// ``backwardInput(outputGradient:weight:inputGradient:batch:height:width:channels:kernelSize:)``
  /// (skipped when nil), `weightGradient` and `biasGradient` as in
  /// ``backwardWeight(input:outputGradient:weightGradient:biasGradient:batch:height:width:channels:kernelSize:)``.
  ///
  /// The two passes each read `∂L/∂y` and copy it into padded channel-blocked rows; here each
  /// `∂L/∂y` row is copied once into a ring of `k` padded rows, adds its weight-gradient
  /// contribution while its `k` input rows are in the input ring, and `p` rows later serves the
  /// input-gradient row that needs it. So `x` and `∂L/∂y` are each read once and `∂L/∂x` written
  /// once: three passes over memory instead of four, which is what bounds this kernel on large
  /// batches. Each thread recomputes the `p` gradient rows on either side of its range (copies only).
  public static func backward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>?, weightGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?,
    batch: Int, height: Int, width: Int, channels: Int, kernelSize: Int
  ) {
    let s = Shape(
      batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize,
      op: "depthwiseConv2D backward")
    guard let inputGradient else {
      backwardWeight(
        input: input, outputGradient: outputGradient, weightGradient: weightGradient, biasGradient: biasGradient,
        batch: batch, height: height, width: width, channels: channels, kernelSize: kernelSize)
      return
    }
    backward(
      input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
      weightGradient: weightGradient, biasGradient: biasGradient, shape: s, chunks: backwardChunks(s))
  }

  /// Row ranges for the fused backward pass: as many as the forward uses, but each at least `2k`
  /// rows, so the halo rows copied twice stay a small fraction of the work.
  static func backwardChunks(_ s: Shape) -> Int {
    Swift.max(1, Swift.min(s.chunks, s.rows / (2 * s.kernelSize)))
  }

  /// The fused backward pass with the rows split into `chunks` ranges (tests force several).
  static func backward(
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
    inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, shape s: Shape, chunks: Int
  ) {
    let k = s.kernelSize, H = s.height, p = s.padding, C = s.channels
    let ringCount = k * s.paddedRowCount
    let partialCount = Self.partialCount(s)
    // Per chunk: the input ring, the gradient ring and the weight-gradient partial.
    let perChunk = 2 * ringCount + partialCount
    let biasCount = s.blocks * lanes
    let scratch = Tensor(uninitializedShape: [s.packedWeightCount + biasCount + chunks * perChunk])
    let flipped = scratch.buffer.pointer
    let zeroBias = flipped + s.packedWeightCount
    let chunkBase = zeroBias + biasCount
    packWeight(weight, into: flipped, shape: s, flipped: true)
    packBias(nil, into: zeroBias, shape: s)
    let hasBias = biasGradient != nil

    Parallel.forEach(chunks) { chunk in
      let inputRing = chunkBase + chunk * perChunk
      let gradientRing = inputRing + ringCount
      let partial = gradientRing + ringCount
      // Pad columns and unused lanes of the gradient rows stay zero; rows only write real elements.
      gradientRing.initialize(repeating: 0, count: ringCount)
      partial.initialize(repeating: 0, count: partialCount)
      withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 2 * k) { table in
        let inputRows = table.baseAddress!
        let gradientRows = inputRows + k
        var ring = PaddedRowRing(input: input, shape: s, storage: inputRing, rows: inputRows)
        let rows = s.chunkRows(chunk, of: chunks)
        var next = Int.min  // the next gradient row to copy into the ring (flattened n · H + h)
        for row in rows {
          // ∂L/∂x of `row` needs the gradient rows within p of it, inside its image.
          let image = row - row % H, h = row % H
          next = Swift.max(next, image + Swift.max(0, h - p))
          while next <= image + Swift.min(H - 1, h + p) {
            let slot = gradientRing + ((next % H) % k) * s.paddedRowCount
            scatterRow(outputGradient + next * s.width * C, into: slot + p * lanes, shape: s, blockStride: s.blockRowCount)
            // Halo rows belong to the neighbouring range's weight gradient.
            if rows.contains(next) {
              let khRange = ring.prepare(row: next)
              weightRow(
                rows: UnsafePointer(inputRows), khRange: khRange, outputGradient: slot + p * lanes,
                gradientBlockStride: s.blockRowCount, partial: partial, shape: s, hasBias: hasBias)
            }
            next += 1
          }
          let khRange = s.kernelRows(at: h)
          for kh in khRange {
            gradientRows[kh] = UnsafePointer(gradientRing + ((h - p + kh) % k) * s.paddedRowCount)
          }
          forwardRow(
            rows: UnsafePointer(gradientRows), khRange: khRange, weight: flipped, bias: zeroBias,
            output: inputGradient + row * s.width * C, shape: s)
        }
      }
    }

    reducePartials(
      first: chunkBase + 2 * ringCount, stride: perChunk, chunks: chunks, shape: s,
      weightGradient: weightGradient, biasGradient: biasGradient)
    withExtendedLifetime(scratch) {}
  }

  /// Floats of one thread's packed weight-gradient partial: `[blocks][k][k][8]` then `[blocks][8]` (bias).
  static func partialCount(_ s: Shape) -> Int { s.packedWeightCount + s.blocks * lanes }

  /// Adds up the per-thread packed partials in a fixed order (chunk 0 first, so the result
  /// does not depend on timing) into the first one, then unpacks it to `[k, k, C]` and `[C]`.
  ///
  /// - Parameters:
  ///   - first: chunk 0's partial; chunk `i`'s is at `first + i · stride`.
  static func reducePartials(
    first total: UnsafeMutablePointer<Float>, stride: Int, chunks: Int, shape s: Shape,
    weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?
  ) {
    let k = s.kernelSize, C = s.channels
    for chunk in 1..<Swift.max(chunks, 1) {
      addInPlace(total, total + chunk * stride, count: partialCount(s))
    }
    for tap in 0..<(k * k) {
      for c in 0..<C {
        weightGradient[tap * C + c] = total[((c / lanes) * k * k + tap) * lanes + c % lanes]
      }
    }
    biasGradient?.update(from: total + s.packedWeightCount, count: C)
  }

  /// Adds one output row's contribution to the packed partials. For each channel block
  /// and kernel row, up to 8 kernel columns are accumulated in registers over the whole
  /// row; one `dy` load serves all of them (`taps + 1` loads per `taps` FMAs).
  ///
  /// - Parameters:
  ///   - outputGradient: the row's `∂L/∂y`, channel-blocked: column `w` of block `b` at
  ///     `dy + b · gradientBlockStride + w · 8`.
  @inline(__always)
  static func weightRow(
    rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
    gradientBlockStride: Int, partial: UnsafeMutablePointer<Float>, shape s: Shape, hasBias: Bool
  ) {
    let k = s.kernelSize, W = s.width
    for block in 0..<s.blocks {
      let g = dy + block * gradientBlockStride
      if hasBias {
        let biasPartial = partial + s.packedWeightCount + block * lanes
        // Four partial sums, so the adds do not wait on each other's latency.
        var s0 = Vector.zero, s1 = Vector.zero, s2 = Vector.zero, s3 = Vector.zero
        var w = 0
        while w + 4 <= W {
          s0 += load(g + w * lanes)
          s1 += load(g + (w + 1) * lanes)
          s2 += load(g + (w + 2) * lanes)
          s3 += load(g + (w + 3) * lanes)
          w += 4
        }
        while w < W {
          s0 += load(g + w * lanes)
          w += 1
        }
        store(load(biasPartial) + ((s0 + s1) + (s2 + s3)), biasPartial)
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
          case 7: weightTile7(xk, g, dwk, W)
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

  /// `weightTile` for 7 taps: the 7 input columns `x[w ..< w + 7]` that step `w` needs
  /// stay in registers and slide by one column per step, so each step loads one `dy`
  /// and one new input vector for 7 FMAs (unrolled by 7 so the window rotates through
  /// fixed register names).
  @inline(__always)
  static func weightTile7(
    _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>, _ width: Int
  ) {
    var a0 = Vector.zero, a1 = Vector.zero, a2 = Vector.zero, a3 = Vector.zero
    var a4 = Vector.zero, a5 = Vector.zero, a6 = Vector.zero
    var xp = x, gp = dy, w = 0
    var r0 = load(xp), r1 = load(xp + 8), r2 = load(xp + 16), r3 = load(xp + 24)
    var r4 = load(xp + 32), r5 = load(xp + 40), r6 = Vector.zero
    var g = Vector.zero
    while w + 7 <= width {
      // Step u (0...6) loads x[w + u + 6] and reads x[w + u + t] from r((u + t) % 7) for tap t.
      g = load(gp + 0); r6 = load(xp + 48)
      madd(&a0, r0, g); madd(&a1, r1, g); madd(&a2, r2, g); madd(&a3, r3, g)
      madd(&a4, r4, g); madd(&a5, r5, g); madd(&a6, r6, g)
      g = load(gp + 8); r0 = load(xp + 56)
      madd(&a0, r1, g); madd(&a1, r2, g); madd(&a2, r3, g); madd(&a3, r4, g)
      madd(&a4, r5, g); madd(&a5, r6, g); madd(&a6, r0, g)
      g = load(gp + 16); r1 = load(xp + 64)
      madd(&a0, r2, g); madd(&a1, r3, g); madd(&a2, r4, g); madd(&a3, r5, g)
      madd(&a4, r6, g); madd(&a5, r0, g); madd(&a6, r1, g)
      g = load(gp + 24); r2 = load(xp + 72)
      madd(&a0, r3, g); madd(&a1, r4, g); madd(&a2, r5, g); madd(&a3, r6, g)
      madd(&a4, r0, g); madd(&a5, r1, g); madd(&a6, r2, g)
      g = load(gp + 32); r3 = load(xp + 80)
      madd(&a0, r4, g); madd(&a1, r5, g); madd(&a2, r6, g); madd(&a3, r0, g)
      madd(&a4, r1, g); madd(&a5, r2, g); madd(&a6, r3, g)
      g = load(gp + 40); r4 = load(xp + 88)
      madd(&a0, r5, g); madd(&a1, r6, g); madd(&a2, r0, g); madd(&a3, r1, g)
      madd(&a4, r2, g); madd(&a5, r3, g); madd(&a6, r4, g)
      g = load(gp + 48); r5 = load(xp + 96)
      madd(&a0, r6, g); madd(&a1, r0, g); madd(&a2, r1, g); madd(&a3, r2, g)
      madd(&a4, r3, g); madd(&a5, r4, g); madd(&a6, r5, g)
      xp += 7 * lanes
      gp += 7 * lanes
      w += 7
    }
    while w < width {
      g = load(gp)
      madd(&a0, load(xp), g); madd(&a1, load(xp + 8), g); madd(&a2, load(xp + 16), g)
      madd(&a3, load(xp + 24), g); madd(&a4, load(xp + 32), g); madd(&a5, load(xp + 40), g)
      madd(&a6, load(xp + 48), g)
      xp += lanes
      gp += lanes
      w += 1
    }
    store(load(dw) + a0, dw)
    store(load(dw + 8) + a1, dw + 8)
    store(load(dw + 16) + a2, dw + 16)
    store(load(dw + 24) + a3, dw + 24)
    store(load(dw + 32) + a4, dw + 32)
    store(load(dw + 40) + a5, dw + 40)
    store(load(dw + 48) + a6, dw + 48)
  }
}

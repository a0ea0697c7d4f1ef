import CQuadraPrefetch

extension DepthwiseConvolution {
  /// The depthwise kernels for one vector type `V` (`SIMD8<Float>` or `SIMD16<Float>`): a
  /// channel block is one `V`, and every offset in the tiles is a multiple of its lane count `L`.
  ///
  /// Written once over `V` and specialized by the compiler for both widths (the entry points in
  /// ``DepthwiseConvolution`` name the concrete type), so the two widths cannot drift apart.
  enum Kernels<V: SIMD> where V.Scalar == Float {
    /// Lanes per vector and per channel block: a constant once specialized.
    @inline(__always) static var L: Int { V.scalarCount }

    @inline(__always) static func load(_ pointer: UnsafePointer<Float>) -> V {
      UnsafeRawPointer(pointer).loadUnaligned(as: V.self)
    }

    @inline(__always) static func store(_ value: V, _ pointer: UnsafeMutablePointer<Float>) {
      UnsafeMutableRawPointer(pointer).storeBytes(of: value, as: V.self)
    }

    /// `accumulator + a · b`, one FMA instruction on targets that have it.
    @inline(__always) static func multiplyAdd(_ accumulator: V, _ a: V, _ b: V) -> V {
      #if QUADRANET_PORTABLE
        // Without a known FMA unit `addingProduct` becomes a libm `fmaf` call per lane.
        return accumulator + a * b
      #else
        return accumulator.addingProduct(a, b)
      #endif
    }

    /// `accumulator += a · b`.
    @inline(__always) static func madd(_ accumulator: inout V, _ a: V, _ b: V) {
      accumulator = multiplyAdd(accumulator, a, b)
    }

    /// Stores the first `count` (1...L) lanes of `value`.
    @inline(__always) static func store(_ value: V, _ pointer: UnsafeMutablePointer<Float>, lanes count: Int) {
      if count == L {
        store(value, pointer)
      } else {
        for lane in 0..<count { pointer[lane] = value[lane] }
      }
    }

    /// The 8-lane kernels' helpers, for the first half of a partial 16-lane block.
    typealias Half = Kernels<SIMD8<Float>>

    /// Writes `value` to the 64-byte-aligned `pointer` with a streaming store when `V` is one
    /// cache line (16 lanes), with a plain store otherwise (a streaming store of half a line would
    /// make the processor write the partial line out before its other half arrives).
    @inline(__always) static func storeStreaming(_ value: V, _ pointer: UnsafeMutablePointer<Float>) {
      if L == 16 {
        quadra_stream_store16(pointer, unsafeBitCast(value, to: SIMD16<Float>.self))
      } else {
        store(value, pointer)
      }
    }

    // MARK: Row copies

    /// Prefetches the cache lines of `count` floats from `start` into L2 (one hint per 64-byte line).
    @inline(__always)
    static func prefetch(_ start: UnsafePointer<Float>, count: Int) {
      if count > 0 { prefetchForReading(start, count: count) }
    }

    /// Copies the `count` floats of `source` into blocks of `L` lanes placed `blockStride` apart.
    ///
    /// The first 8 lanes of a partial 16-lane block move as one 8-lane vector, the rest one by one: the 28² models'
    /// C = 40 ends in a block of 8, and lane by lane that tail (here and in ``PixelNormalization``'s
    /// `normalizeToBlocks`) was half of the ring's row copies, 11% of the quadratic mixer's time at [64,14,14,40].
    /// Measured on an Intel Xeon (`bench ops --ops normalizedQuadraticDepthwiseConv2D --variant 'x[64,14,14,40]'
    /// --threads 1`, two alternations): forward 0.518–0.551 → 0.467 ms, backward 1.08 → 1.015 ms.
    @inline(__always)
    static func scatterToBlocks(
      _ source: UnsafePointer<Float>, count: Int, _ target: UnsafeMutablePointer<Float>, blockStride: Int
    ) {
      var c = 0, block = 0
      while c + L <= count {
        store(load(source + c), target + block * blockStride)
        c += L
        block += 1
      }
      let rest = target + block * blockStride
      var lane = 0
      if L == 16 && count - c >= 8 {
        Half.store(Half.load(source + c), rest)
        lane = 8
      }
      while c + lane < count {
        rest[lane] = source[c + lane]
        lane += 1
      }
    }

    /// Copies one NHWC row (`W` columns of `C` channels) into channel-blocked layout: column
    /// `w` of channel block `b` goes to `target + b · blockStride + w · L`.
    @inline(__always)
    static func scatterRow(
      _ source: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>, shape s: Shape, blockStride: Int
    ) {
      for column in 0..<s.width {
        scatterToBlocks(source + column * s.channels, count: s.channels, target + column * L, blockStride: blockStride)
      }
    }

    /// The input rows one output row needs, as padded channel-blocked rows in a ring of `k + 1` slots.
    ///
    /// Rows are copied once per thread chunk as the output row advances; rows above and
    /// below the image are not materialized (``prepare(row:)`` returns the kernel rows
    /// that fall inside the image).
    ///
    /// The extra slot holds the *next* row while the current output row is computed: the row
    /// kernels call ``copyAhead(part:of:)`` between channel blocks, which copies the next slice
    /// of its columns. Copying a whole row at once (14 KB at 56×56×64) stalls on memory with no
    /// arithmetic to overlap; in slices between blocks the loads that miss the caches run while
    /// the FMAs of the next block execute, and the hardware prefetcher sees one steady stream.
    /// (At N = 32, 56×56, C = 64 the forward pass otherwise took one memcpy of its tensors longer
    /// than its arithmetic.)
    struct PaddedRowRing {
      let input: UnsafePointer<Float>
      let shape: Shape
      /// `k + 1` slots of ``Shape/paddedRowCount`` floats.
      let storage: UnsafeMutablePointer<Float>
      /// For each kernel row `kh`, the slot it reads for the current output row.
      let rows: UnsafeMutablePointer<UnsafePointer<Float>>
      private var image = -1
      /// The first row of `image` not yet fully copied.
      private var nextRow = 0
      /// Columns of `nextRow` already copied by ``copyAhead(part:of:)``.
      private var copiedColumns = 0
      /// The current output row's index in its image.
      private var outputRow = 0
      /// Whether ``copyAhead(part:of:)`` works: only for rows of at least ``minimumCopyAheadRow``
      /// floats. Smaller rows (the 28×28 models' 14×14×40) come from L2/L3 anyway and their slices are
      /// too small to pay for the bookkeeping: with it, N = 64, 14×14, C = 40 ran at 0.54–0.68 of peak
      /// instead of 0.66–0.80 (loaded machine).
      let copiesAhead: Bool
      /// The LayerNorm applied to each pixel as it is copied, or nil (the ring holds `x` itself).
      let normalization: PixelNormalization?

      /// Floats per NHWC row from which rows are copied ahead (8 KB: 56×56×64's rows are 14 KB).
      static var minimumCopyAheadRow: Int { 2048 }

      /// Floats of a ring's storage: `k + 1` padded rows.
      static func storageCount(_ s: Shape) -> Int { (s.kernelSize + 1) * s.paddedRowCount }

      init(input: UnsafePointer<Float>, shape: Shape, storage: UnsafeMutablePointer<Float>,
           rows: UnsafeMutablePointer<UnsafePointer<Float>>, normalization: PixelNormalization? = nil) {
        self.input = input
        self.shape = shape
        self.storage = storage
        self.rows = rows
        self.normalization = normalization
        copiesAhead = shape.width * shape.channels >= Self.minimumCopyAheadRow
        // Pad columns and unused lanes stay zero; row copies only write real elements.
        storage.initialize(repeating: 0, count: Self.storageCount(shape))
      }

      /// The slot of row `h` of the current image (valid while `h` is within `p` of the current output row).
      func slot(ofImageRow h: Int) -> UnsafeMutablePointer<Float> {
        storage + (h % (shape.kernelSize + 1)) * shape.paddedRowCount
      }

      /// Loads the input rows output row `row` (flattened `n · H + h`) needs, points
      /// ``rows`` at them and returns the kernel rows inside the image.
      mutating func prepare(row: Int) -> Range<Int> {
        let s = shape, H = s.height, p = s.padding
        let n = row / H, h = row % H
        outputRow = h
        if n != image {
          image = n
          nextRow = 0
          copiedColumns = 0
        }
        let khRange = s.kernelRows(at: h)
        if nextRow < h - p + khRange.lowerBound {
          nextRow = h - p + khRange.lowerBound
          copiedColumns = 0
        }
        while nextRow < h - p + khRange.upperBound {
          copy(columns: copiedColumns..<s.width, ofImageRow: nextRow)
          nextRow += 1
          copiedColumns = 0
        }
        for kh in khRange {
          rows[kh] = UnsafePointer(slot(ofImageRow: h - p + kh))
        }
        return khRange
      }

      /// Copies the columns up to `W · part / parts` of the row after the current window (if the
      /// image has one), so that after `part = parts` the next ``prepare(row:)`` finds it in place.
      @inline(__always)
      mutating func copyAhead(part: Int, of parts: Int) {
        guard copiesAhead && image >= 0 else { return }
        guard nextRow < shape.height else {
          prefetchNextImage(part: part, of: parts)
          return
        }
        let end = shape.width * part / parts
        guard end > copiedColumns else { return }
        copy(columns: copiedColumns..<end, ofImageRow: nextRow)
        // The same columns of the row after it are copied one output row later: ask for them now.
        if nextRow + 1 < shape.height {
          let C = shape.channels
          let next = input + ((image * shape.height + nextRow + 1) * shape.width + copiedColumns) * C
          prefetch(next, count: (end - copiedColumns) * C)
        }
        copiedColumns = end
      }

      /// In an image's last `p + 1` output rows (`H − p − 1 ... H − 1`) no row is left to copy
      /// ahead, and the next image's first `p + 1` rows, which ``prepare(row:)`` copies at once when
      /// it starts, would come from memory with nothing to overlap: they are prefetched here
      /// instead, next-image row `h + p + 1 − H` during output row `h`, slice `part` of `parts`.
      private func prefetchNextImage(part: Int, of parts: Int) {
        let s = shape
        let nextImageRow = outputRow + s.padding + 1 - s.height
        guard image + 1 < s.batch && nextImageRow >= 0 && nextImageRow < s.height else { return }
        let rowCount = s.width * s.channels
        let begin = rowCount * (part - 1) / parts, end = rowCount * part / parts
        prefetch(input + ((image + 1) * s.height + nextImageRow) * rowCount + begin, count: end - begin)
      }

      private func copy(columns: Range<Int>, ofImageRow h: Int) {
        let s = shape, C = s.channels
        let firstPixel = (image * s.height + h) * s.width + columns.lowerBound
        let source = input + firstPixel * C
        let target = slot(ofImageRow: h) + (s.padding + columns.lowerBound) * L
        if let normalization {
          normalization.copy(
            source, pixels: firstPixel..<(firstPixel + columns.count), into: target, blockStride: s.blockRowCount)
          return
        }
        for i in 0..<columns.count {
          scatterToBlocks(source + i * C, count: C, target + i * L, blockStride: s.blockRowCount)
        }
      }
    }

    /// A LayerNorm over the channels of each pixel, `x̂ = (x − μ)·σ⁻¹ ⊙ γ + β`, applied by a
    /// ``PaddedRowRing`` as it copies input rows: the quadratic mixer fused with its block's norm never
    /// writes `x̂` (which it would otherwise write, and read back from memory, in forward and again in
    /// backward, and keep between them).
    ///
    /// Each pixel's μ and σ⁻¹ are known before the ring copies it (the forward pass computes them all in
    /// one streaming pass first: computed here, pixel by pixel between the row kernels, their dependency
    /// chains of a division and a square root did not overlap and the 28² forward got slower).
    struct PixelNormalization {
      let channels: Int
      let weight: UnsafePointer<Float>
      let bias: UnsafePointer<Float>
      let mean: UnsafePointer<Float>
      let inverseStandardDeviation: UnsafePointer<Float>

      /// Normalizes `pixels` (consecutive pixels starting at `source`) into channel-blocked columns at
      /// `target`, `L` floats apart. Unused lanes of a partial last block are not written.
      @inline(__always)
      func copy(
        _ source: UnsafePointer<Float>, pixels: Range<Int>, into target: UnsafeMutablePointer<Float>, blockStride: Int
      ) {
        let C = channels
        for (i, pixel) in pixels.enumerated() {
          normalizeToBlocks(
            source + i * C, count: C, target + i * L, blockStride: blockStride, mean: mean[pixel],
            inverseStandardDeviation: inverseStandardDeviation[pixel])
        }
      }

      /// `target[block · blockStride + lane] = (x[j] − μ)·σ⁻¹·γ[j] + β[j]` for `j = block · L + lane < count`,
      /// the normalized ``scatterToBlocks(_:count:_:blockStride:)``.
      @inline(__always)
      func normalizeToBlocks(
        _ x: UnsafePointer<Float>, count: Int, _ target: UnsafeMutablePointer<Float>, blockStride: Int,
        mean mu: Float, inverseStandardDeviation inv: Float
      ) {
        let muVector = V(repeating: mu), invVector = V(repeating: inv)
        var c = 0, block = 0
        while c + L <= count {
          let normalized = (load(x + c) - muVector) * invVector
          store(multiplyAdd(load(bias + c), normalized, load(weight + c)), target + block * blockStride)
          c += L
          block += 1
        }
        let rest = target + block * blockStride
        var lane = 0
        if L == 16 && count - c >= 8 {
          // Eight lanes of a partial block as one vector, with the full blocks' operations (the same bits as
          // 8-lane blocks give).
          let normalized = (Half.load(x + c) - SIMD8(repeating: mu)) * SIMD8(repeating: inv)
          Half.store(Half.multiplyAdd(Half.load(bias + c), normalized, Half.load(weight + c)), rest)
          lane = 8
        }
        while c + lane < count {
          rest[lane] = (x[c + lane] - mu) * inv * weight[c + lane] + bias[c + lane]
          lane += 1
        }
      }
    }

    // MARK: Forward

    /// Packs the weight (optionally flipped) and bias, then runs the row kernel over all output rows.
    static func convolve(
      input: UnsafePointer<Float>, weight: UnsafePointer<Float>, flipped: Bool, bias: UnsafePointer<Float>?,
      output: UnsafeMutablePointer<Float>, shape s: Shape
    ) {
      guard s.rows > 0 else { return }
      let chunks = s.chunks
      let tiling = inPlaceTiling(s)
      // Per chunk: the input ring (none where the rows are read in place) and the staging row.
      let ringCount = tiling == nil ? PaddedRowRing.storageCount(s) : 0
      let perChunk = ringCount + s.stagingCount
      let scratch = Tensor(uninitializedShape: [s.packedWeightCount + s.packedBiasCount + chunks * perChunk])
      let packedWeight = scratch.buffer.pointer
      let packedBias = packedWeight + s.packedWeightCount
      let chunkBase = packedBias + s.packedBiasCount
      packWeight(weight, into: packedWeight, shape: s, flipped: flipped)
      packBias(bias, into: packedBias, shape: s)
      if let tiling {
        convolveInPlace(
          input: input, weight: packedWeight, bias: packedBias, output: output, shape: s, tiling: tiling,
          staging: chunkBase, stagingStride: perChunk)
        withExtendedLifetime(scratch) {}
        return
      }
      let streaming = streamsOutput(output, tensorsRead: 1, shape: s)

      Parallel.forEach(chunks) { chunk in
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: s.kernelSize) { table in
          let rows = table.baseAddress!
          var ring = PaddedRowRing(input: input, shape: s, storage: chunkBase + chunk * perChunk, rows: rows)
          let staging = chunkBase + chunk * perChunk + ringCount
          for row in s.chunkRows(chunk) {
            let khRange = ring.prepare(row: row)
            forwardRow(
              rows: UnsafePointer(rows), khRange: khRange, weight: packedWeight, bias: packedBias,
              output: output + row * s.width * s.channels, shape: s, streaming: streaming, staging: staging
            ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
          }
        }
        if streaming { quadra_store_fence() }
      }
      withExtendedLifetime(scratch) {}
    }

    /// ``convolve(input:weight:flipped:bias:output:shape:)`` with the input rows read in place, in NHWC, by the
    /// tiles of `tiling` (``inPlaceTiling(_:)``), instead of copied into a ring of padded rows: each input element
    /// is loaded by the tiles that use it and by nothing else. The input row a later output row reads first
    /// (`row + p + 1`) is prefetched into L2 a slice per tile position. `weight` and `bias` are packed; chunk `i`
    /// stages its rows at `staging + i · stagingStride` (``Shape/stagingCount`` floats) when the output streams.
    static func convolveInPlace(
      input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
      output: UnsafeMutablePointer<Float>, shape s: Shape, tiling: (eights: Int, sevens: Int),
      staging: UnsafeMutablePointer<Float>, stagingStride: Int
    ) {
      let k = s.kernelSize, p = s.padding, C = s.channels, rowCount = s.width * C
      let streaming = streamsOutput(output, tensorsRead: 1, shape: s)
      let staged = streaming && s.stagesRows
      Parallel.forEach(s.chunks) { chunk in
        let stagingRow = staging + chunk * stagingStride
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: k) { table in
          let rows = table.baseAddress!
          for row in s.chunkRows(chunk) {
            let khRange = s.kernelRows(at: row % s.height)
            for kh in khRange { rows[kh] = input + (row - p + kh) * rowCount }
            let ahead = row + p + 1
            sevenTapRowInPlace(
              tiling, UnsafePointer(rows), khRange, weight, bias, staged ? stagingRow : output + row * rowCount,
              channels: C, streaming: streaming && !staged, prefetching: ahead < s.rows ? input + ahead * rowCount : nil)
            if staged { streamLines(stagingRow, to: output + row * rowCount, count: rowCount) }
          }
        }
        if streaming { quadra_store_fence() }
      }
    }

    /// One output row, channel block by channel block (so the block's `k` padded rows stay
    /// in L1), in the column tiles of ``DepthwiseConvolution/forEachColumnTile(_:_:)``; `afterBlock(b)` runs after
    /// block `b` (the callers copy the next row ahead there). `streaming` (see
    /// ``DepthwiseConvolution/streamsOutput(_:tensorsRead:shape:)``, which guarantees whole aligned lines)
    /// writes the row with streaming stores: the tiles directly when they are whole 16-lane lines,
    /// otherwise into `staging` (``Shape/stagingCount`` floats, still in L1 or L2 when the row is done),
    /// which is then streamed out in whole lines.
    @inline(__always)
    static func forwardRow(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>,
      weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
      output: UnsafeMutablePointer<Float>, shape s: Shape, streaming: Bool, staging: UnsafeMutablePointer<Float>,
      afterBlock: (Int) -> Void
    ) {
      let k = s.kernelSize, C = s.channels
      let staged = streaming && s.stagesRows
      let target = staged ? staging : output
      let eights = eightColumnRowTiles(s)
      for block in 0..<s.blocks {
        let lanesUsed = Swift.min(L, C - block * L)
        let w = weight + block * k * k * L
        let x = block * s.blockRowCount
        let out = target + block * L
        if eights > 0 {
          // 8-lane blocks are staged, never streamed tile by tile (``Shape/stagesRows``).
          sevenTapTiles8(eights, rows, khRange, x, w, bias + block * L, out, stride: C, lanes: lanesUsed)
          let b = load(bias + block * L)
          var w0 = 8 * eights
          while w0 < s.width {
            var tile = Tile(repeating: b)
            accumulate(7, &tile, rows, khRange, x + w0 * L, w, k)
            tile.store(7, out + w0 * C, stride: C, lanes: lanesUsed)
            w0 += 7
          }
        } else {
          let b = load(bias + block * L)
          forEachColumnTile(s) { T, w0 in
            var tile = Tile(repeating: b)
            accumulate(T, &tile, rows, khRange, x + w0 * L, w, k)
            if streaming && !staged {
              tile.storeStreaming(T, out + w0 * C, stride: C)
            } else {
              tile.store(T, out + w0 * C, stride: C, lanes: lanesUsed)
            }
          }
        }
        afterBlock(block)
      }
      if staged { streamLines(staging, to: output, count: s.width * C) }
    }

    /// How many 8-column tiles ``forwardRow(rows:khRange:weight:bias:output:shape:streaming:staging:afterBlock:)``
    /// runs at the start of each row (the rest in 7-column tiles), or 0 for the tiles of
    /// ``DepthwiseConvolution/forEachColumnTile(_:_:)``: only for the 7×7 kernel on 8-lane blocks, and
    /// only where whole 8- and 7-column tiles cover the row (``DepthwiseConvolution/eightColumnTiles(width:)``).
    ///
    /// Each accumulator of the 7×7 tile is one chain of dependent FMAs: a ymm FMA takes 4 cycles on each of
    /// Zen's 2 pipes, so 7 chains leave an eighth of the unit idle and 8 fill it. (A zmm FMA takes both pipes
    /// for one cycle: 4 chains suffice, and 16-lane blocks keep 7 columns.)
    @inline(__always)
    static func eightColumnRowTiles(_ s: Shape) -> Int {
      guard s.kernelSize == 7 && L == 8 else { return 0 }
      return DepthwiseConvolution.eightColumnTiles(width: s.width) ?? 0
    }

    /// `tiles` 8-column 7×7 tiles of one 8-lane block (output columns `0 ..< 8 · tiles`), each with `bias`
    /// added and stored `stride` floats apart (`lanes` lanes per column).
    ///
    /// The tile needs 8 accumulators, 7 weights and 1 input: all 16 registers AVX2 has. It is a function of
    /// its own, taking only pointers, so that no vector of the caller (the bias of its other tiles, say) is
    /// live across its loop: inlined into the row kernel, the compiler spilled accumulators inside the FMA
    /// chains (an AVX2 build's forward pass at 0.28–0.34 of the peak instead of 0.64), and with the tile in the
    /// shared ``accumulate(_:_:_:_:_:_:_:)`` the 28² models' 3×3 quadratic mixers ran 2–5% slower
    /// (stop 19, and again at stop 23).
    @inline(never)
    static func sevenTapTiles8(
      _ tiles: Int, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
      _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>,
      stride: Int, lanes: Int
    ) {
      for index in 0..<tiles {
        var tile = Tile(repeating: load(bias))
        accumulate7(8, &tile, rows, khRange, x + index * 8 * L, weight)
        tile.store(8, output + index * 8 * stride, stride: stride, lanes: lanes)
      }
    }

    /// Copies `count` floats (a multiple of 16) to the 64-byte-aligned `target` with streaming stores.
    @inline(__always)
    static func streamLines(_ source: UnsafePointer<Float>, to target: UnsafeMutablePointer<Float>, count: Int) {
      var i = 0
      while i < count {
        quadra_stream_store16(target + i, UnsafeRawPointer(source + i).loadUnaligned(as: SIMD16<Float>.self))
        i += 16
      }
    }

    // MARK: Register tiles

    /// Accumulators for up to 8 output columns × `L` channels of one channel block.
    ///
    /// Named fields (not an array) so that, once the tile functions are inlined with a
    /// constant column count `T`, the used fields live in registers and the others vanish.
    struct Tile {
      var v0, v1, v2, v3, v4, v5, v6, v7: V

      @inline(__always) init(repeating value: V) {
        (v0, v1, v2, v3, v4, v5, v6, v7) = (value, value, value, value, value, value, value, value)
      }

      /// Loads `T` columns of a channel-blocked row (vectors `L` floats apart).
      @inline(__always) init(_ T: Int, loading p: UnsafePointer<Float>) {
        self.init(repeating: .zero)
        v0 = load(p)
        if T > 1 { v1 = load(p + L) }
        if T > 2 { v2 = load(p + 2 * L) }
        if T > 3 { v3 = load(p + 3 * L) }
        if T > 4 { v4 = load(p + 4 * L) }
        if T > 5 { v5 = load(p + 5 * L) }
        if T > 6 { v6 = load(p + 6 * L) }
        if T > 7 { v7 = load(p + 7 * L) }
      }

      /// Calls `body(column, t)` for the first `T` columns `t` of the tile.
      @inline(__always) func forEachColumn(_ T: Int, _ body: (V, Int) -> Void) {
        body(v0, 0)
        if T > 1 { body(v1, 1) }
        if T > 2 { body(v2, 2) }
        if T > 3 { body(v3, 3) }
        if T > 4 { body(v4, 4) }
        if T > 5 { body(v5, 5) }
        if T > 6 { body(v6, 6) }
        if T > 7 { body(v7, 7) }
      }

      /// `v_t += x[t · L] · factor` for the first `T` columns: one step of a tile's (or a weight tile's)
      /// loop, one multiply-add per column, all sharing `factor`.
      @inline(__always) mutating func addProducts(_ T: Int, _ x: UnsafePointer<Float>, _ factor: V) {
        v0 = Kernels.multiplyAdd(v0, Kernels.load(x), factor)
        if T > 1 { v1 = Kernels.multiplyAdd(v1, Kernels.load(x + L), factor) }
        if T > 2 { v2 = Kernels.multiplyAdd(v2, Kernels.load(x + 2 * L), factor) }
        if T > 3 { v3 = Kernels.multiplyAdd(v3, Kernels.load(x + 3 * L), factor) }
        if T > 4 { v4 = Kernels.multiplyAdd(v4, Kernels.load(x + 4 * L), factor) }
        if T > 5 { v5 = Kernels.multiplyAdd(v5, Kernels.load(x + 5 * L), factor) }
        if T > 6 { v6 = Kernels.multiplyAdd(v6, Kernels.load(x + 6 * L), factor) }
        if T > 7 { v7 = Kernels.multiplyAdd(v7, Kernels.load(x + 7 * L), factor) }
      }

      /// Stores the first `T` columns `stride` floats apart, `lanes` lanes each (NHWC output).
      @inline(__always) func store(_ T: Int, _ p: UnsafeMutablePointer<Float>, stride: Int, lanes count: Int) {
        forEachColumn(T) { Kernels.store($0, p + $1 * stride, lanes: count) }
      }

      /// Stores the first `T` columns `stride` floats apart with streaming stores (full blocks,
      /// 64-byte-aligned columns).
      @inline(__always) func storeStreaming(_ T: Int, _ p: UnsafeMutablePointer<Float>, stride: Int) {
        forEachColumn(T) { Kernels.storeStreaming($0, p + $1 * stride) }
      }

      /// Stores the first `T` columns into a channel-blocked row (full vectors `L` floats apart).
      @inline(__always) func store(_ T: Int, blocked p: UnsafeMutablePointer<Float>) {
        forEachColumn(T) { Kernels.store($0, p + $1 * L) }
      }

      /// `a ⊙ b + c`, column by column.
      @inline(__always) static func multiplyAdd(_ a: Tile, _ b: Tile, _ c: Tile) -> Tile {
        var r = c
        r.v0 = Kernels.multiplyAdd(c.v0, a.v0, b.v0)
        r.v1 = Kernels.multiplyAdd(c.v1, a.v1, b.v1)
        r.v2 = Kernels.multiplyAdd(c.v2, a.v2, b.v2)
        r.v3 = Kernels.multiplyAdd(c.v3, a.v3, b.v3)
        r.v4 = Kernels.multiplyAdd(c.v4, a.v4, b.v4)
        r.v5 = Kernels.multiplyAdd(c.v5, a.v5, b.v5)
        r.v6 = Kernels.multiplyAdd(c.v6, a.v6, b.v6)
        r.v7 = Kernels.multiplyAdd(c.v7, a.v7, b.v7)
        return r
      }

      /// `a ⊙ b`, column by column.
      @inline(__always) static func * (a: Tile, b: Tile) -> Tile {
        multiplyAdd(a, b, Tile(repeating: .zero))
      }
    }

    /// Adds the convolution of `T` output columns (1 ... 8; see ``DepthwiseConvolution/forEachColumnTile(_:_:)``) of one
    /// channel block to `tile`: `tile[t] += Σ_{kh ∈ khRange, j < k} rows[kh][x + (t + j) · L] · weight[kh][j]`.
    ///
    /// Every tile function (plain, fused quadratic, and the input gradients) is built from this,
    /// so the inner loops exist once.
    @inline(__always)
    static func accumulate(
      _ T: Int, _ tile: inout Tile, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
      _ weight: UnsafePointer<Float>, _ k: Int
    ) {
      if T == 7 && k == 7 {
        accumulate7(7, &tile, rows, khRange, x, weight)
        return
      }
      var sums = tile
      for kh in khRange {
        var xp = rows[kh] + x
        var wp = weight + kh &* k &* L
        for _ in 0..<k {
          sums.addProducts(T, xp, load(wp))
          xp += L
          wp += L
        }
      }
      tile = sums
    }

    /// `accumulate` for the 3×3 kernel and `T` (1 ... 8) output columns, for `n` (1 ... 3, a literal)
    /// convolutions of the same input rows at once: `a` with `wa`, then `b` with `wb` and `c` with `wc`
    /// (the tiles and weights past `n` are not touched).
    ///
    /// The general loop loads every input vector once per tap (`T + 1` loads per `T` FMAs), which
    /// leaves the load ports, not the FMA unit, setting the pace. Here, as in ``accumulate7(_:_:_:_:_:)``,
    /// a kernel row's 3 weight vectors stay in registers and each of the `T + 2` input columns is
    /// loaded once and multiplied into the (up to 3) outputs it reaches: `T + 5` loads per `3T` FMAs.
    /// The quadratic mixer's convolutions share their inputs: with `n` of them the loads are shared too
    /// (`T + 2 + 3n` per `3nT` FMAs), and `n` independent accumulator sets keep more FMA chains in
    /// flight. `nT + 3n + 1` vectors must fit in the registers (31 for `n` = 3, `T` = 7): `n > 1` only
    /// with AVX-512's 32.
    ///
    /// `@_transparent` (inlined when the caller is compiled) rather than `@inline(__always)`: the optimizer
    /// outlined this much code into a real call taking the tiles in memory (measured: a third of the mixer's
    /// profile in the call, every tile slower).
    @_transparent
    static func accumulate3(
      _ T: Int, _ n: Int, _ a: inout Tile, _ b: inout Tile, _ c: inout Tile,
      _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
      _ wa: UnsafePointer<Float>, _ wb: UnsafePointer<Float>, _ wc: UnsafePointer<Float>
    ) {
      var (a0, a1, a2, a3, a4, a5, a6, a7) = (a.v0, a.v1, a.v2, a.v3, a.v4, a.v5, a.v6, a.v7)
      var (b0, b1, b2, b3, b4, b5, b6, b7) = (b.v0, b.v1, b.v2, b.v3, b.v4, b.v5, b.v6, b.v7)
      var (c0, c1, c2, c3, c4, c5, c6, c7) = (c.v0, c.v1, c.v2, c.v3, c.v4, c.v5, c.v6, c.v7)
      let L = L
      for kh in khRange {
        let xp = rows[kh] + x, row = kh &* (3 * L)
        let wa0 = load(wa + row), wa1 = load(wa + row + L), wa2 = load(wa + row + 2 * L)
        let wb0 = n > 1 ? load(wb + row) : wa0, wb1 = n > 1 ? load(wb + row + L) : wa1
        let wb2 = n > 1 ? load(wb + row + 2 * L) : wa2
        let wc0 = n > 2 ? load(wc + row) : wa0, wc1 = n > 2 ? load(wc + row + L) : wa1
        let wc2 = n > 2 ? load(wc + row + 2 * L) : wa2
        // Input column i reaches output i through tap 0, i − 1 through tap 1 and i − 2 through tap 2.
        var v: V
        v = load(xp)
        madd(&a0, v, wa0); if n > 1 { madd(&b0, v, wb0) }; if n > 2 { madd(&c0, v, wc0) }
        v = load(xp + 1 * L)
        madd(&a0, v, wa1); if n > 1 { madd(&b0, v, wb1) }; if n > 2 { madd(&c0, v, wc1) }
        if T > 1 { madd(&a1, v, wa0); if n > 1 { madd(&b1, v, wb0) }; if n > 2 { madd(&c1, v, wc0) } }
        v = load(xp + 2 * L)
        madd(&a0, v, wa2); if n > 1 { madd(&b0, v, wb2) }; if n > 2 { madd(&c0, v, wc2) }
        if T > 1 { madd(&a1, v, wa1); if n > 1 { madd(&b1, v, wb1) }; if n > 2 { madd(&c1, v, wc1) } }
        if T > 2 { madd(&a2, v, wa0); if n > 1 { madd(&b2, v, wb0) }; if n > 2 { madd(&c2, v, wc0) } }
        if T > 1 {
          v = load(xp + 3 * L)
          madd(&a1, v, wa2); if n > 1 { madd(&b1, v, wb2) }; if n > 2 { madd(&c1, v, wc2) }
          if T > 2 { madd(&a2, v, wa1); if n > 1 { madd(&b2, v, wb1) }; if n > 2 { madd(&c2, v, wc1) } }
          if T > 3 { madd(&a3, v, wa0); if n > 1 { madd(&b3, v, wb0) }; if n > 2 { madd(&c3, v, wc0) } }
        }
        if T > 2 {
          v = load(xp + 4 * L)
          madd(&a2, v, wa2); if n > 1 { madd(&b2, v, wb2) }; if n > 2 { madd(&c2, v, wc2) }
          if T > 3 { madd(&a3, v, wa1); if n > 1 { madd(&b3, v, wb1) }; if n > 2 { madd(&c3, v, wc1) } }
          if T > 4 { madd(&a4, v, wa0); if n > 1 { madd(&b4, v, wb0) }; if n > 2 { madd(&c4, v, wc0) } }
        }
        if T > 3 {
          v = load(xp + 5 * L)
          madd(&a3, v, wa2); if n > 1 { madd(&b3, v, wb2) }; if n > 2 { madd(&c3, v, wc2) }
          if T > 4 { madd(&a4, v, wa1); if n > 1 { madd(&b4, v, wb1) }; if n > 2 { madd(&c4, v, wc1) } }
          if T > 5 { madd(&a5, v, wa0); if n > 1 { madd(&b5, v, wb0) }; if n > 2 { madd(&c5, v, wc0) } }
        }
        if T > 4 {
          v = load(xp + 6 * L)
          madd(&a4, v, wa2); if n > 1 { madd(&b4, v, wb2) }; if n > 2 { madd(&c4, v, wc2) }
          if T > 5 { madd(&a5, v, wa1); if n > 1 { madd(&b5, v, wb1) }; if n > 2 { madd(&c5, v, wc1) } }
          if T > 6 { madd(&a6, v, wa0); if n > 1 { madd(&b6, v, wb0) }; if n > 2 { madd(&c6, v, wc0) } }
        }
        if T > 5 {
          v = load(xp + 7 * L)
          madd(&a5, v, wa2); if n > 1 { madd(&b5, v, wb2) }; if n > 2 { madd(&c5, v, wc2) }
          if T > 6 { madd(&a6, v, wa1); if n > 1 { madd(&b6, v, wb1) }; if n > 2 { madd(&c6, v, wc1) } }
          if T > 7 { madd(&a7, v, wa0); if n > 1 { madd(&b7, v, wb0) }; if n > 2 { madd(&c7, v, wc0) } }
        }
        if T > 6 {
          v = load(xp + 8 * L)
          madd(&a6, v, wa2); if n > 1 { madd(&b6, v, wb2) }; if n > 2 { madd(&c6, v, wc2) }
          if T > 7 { madd(&a7, v, wa1); if n > 1 { madd(&b7, v, wb1) }; if n > 2 { madd(&c7, v, wc1) } }
        }
        if T > 7 {
          v = load(xp + 9 * L)
          madd(&a7, v, wa2); if n > 1 { madd(&b7, v, wb2) }; if n > 2 { madd(&c7, v, wc2) }
        }
      }
      (a.v0, a.v1, a.v2, a.v3, a.v4, a.v5, a.v6, a.v7) = (a0, a1, a2, a3, a4, a5, a6, a7)
      if n > 1 { (b.v0, b.v1, b.v2, b.v3, b.v4, b.v5, b.v6, b.v7) = (b0, b1, b2, b3, b4, b5, b6, b7) }
      if n > 2 { (c.v0, c.v1, c.v2, c.v3, c.v4, c.v5, c.v6, c.v7) = (c0, c1, c2, c3, c4, c5, c6, c7) }
    }

    /// `accumulate` for the 7×7 kernel and `T` (7 or 8, a literal) output columns.
    ///
    /// Per kernel row the 7 weight vectors stay in registers and each of the `T + 6` input
    /// columns the tile reads is loaded once and multiplied into every output it reaches
    /// (input column `i` meets output `j` through tap `i − j`): 20 loads per 49 FMAs (21 per 56 for
    /// 8 columns) instead of 56, so the FMA unit, not the load ports, sets the pace. 7 accumulators
    /// + 7 weights + 1 input use 15 of the 16 registers AVX2 has (8 columns: all 16, see
    /// ``sevenTapTiles8(_:_:_:_:_:_:_:stride:lanes:)``).
    ///
    /// The input columns are `columnStride` floats apart: `L` in a padded channel-blocked row, `C` in an NHWC
    /// row read in place (``sevenTapRowInPlace(_:_:_:_:_:_:channels:streaming:prefetching:)``), which has no pad columns: there
    /// `skipsLeading` (a tile at the row's start) leaves out the first 3 input columns, which lie left of the
    /// row, and `skipsTrailing` (a tile at its end) the last 3 (literals, so each case is its own code).
    @inline(__always)
    static func accumulate7(
      _ T: Int, _ tile: inout Tile, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>, _ x: Int,
      _ weight: UnsafePointer<Float>, columnStride: Int = L, skipsLeading: Bool = false, skipsTrailing: Bool = false
    ) {
      var a0 = tile.v0, a1 = tile.v1, a2 = tile.v2, a3 = tile.v3, a4 = tile.v4, a5 = tile.v5, a6 = tile.v6
      var a7 = tile.v7
      let L = L, cs = columnStride
      /// Whether input column `i` (0 ..< T + 6) lies inside the row.
      @inline(__always) func inside(_ i: Int) -> Bool { !(skipsLeading && i < 3) && !(skipsTrailing && i >= T + 3) }
      for kh in khRange {
        let xp = rows[kh] + x, wp = weight + kh &* (7 * L)
        let w0 = load(wp), w1 = load(wp + L), w2 = load(wp + 2 * L), w3 = load(wp + 3 * L)
        let w4 = load(wp + 4 * L), w5 = load(wp + 5 * L), w6 = load(wp + 6 * L)
        var v: V
        if inside(0) { v = load(xp); madd(&a0, v, w0) }
        if inside(1) { v = load(xp + cs); madd(&a0, v, w1); madd(&a1, v, w0) }
        if inside(2) { v = load(xp + 2 * cs); madd(&a0, v, w2); madd(&a1, v, w1); madd(&a2, v, w0) }
        v = load(xp + 3 * cs); madd(&a0, v, w3); madd(&a1, v, w2); madd(&a2, v, w1); madd(&a3, v, w0)
        v = load(xp + 4 * cs); madd(&a0, v, w4); madd(&a1, v, w3); madd(&a2, v, w2); madd(&a3, v, w1)
                               madd(&a4, v, w0)
        v = load(xp + 5 * cs); madd(&a0, v, w5); madd(&a1, v, w4); madd(&a2, v, w3); madd(&a3, v, w2)
                               madd(&a4, v, w1); madd(&a5, v, w0)
        v = load(xp + 6 * cs); madd(&a0, v, w6); madd(&a1, v, w5); madd(&a2, v, w4); madd(&a3, v, w3)
                               madd(&a4, v, w2); madd(&a5, v, w1); madd(&a6, v, w0)
        v = load(xp + 7 * cs); madd(&a1, v, w6); madd(&a2, v, w5); madd(&a3, v, w4); madd(&a4, v, w3)
                               madd(&a5, v, w2); madd(&a6, v, w1); if T > 7 { madd(&a7, v, w0) }
        if inside(8) {
          v = load(xp + 8 * cs); madd(&a2, v, w6); madd(&a3, v, w5); madd(&a4, v, w4); madd(&a5, v, w3)
                                 madd(&a6, v, w2); if T > 7 { madd(&a7, v, w1) }
        }
        if inside(9) {
          v = load(xp + 9 * cs); madd(&a3, v, w6); madd(&a4, v, w5); madd(&a5, v, w4); madd(&a6, v, w3)
                                 if T > 7 { madd(&a7, v, w2) }
        }
        if inside(10) {
          v = load(xp + 10 * cs); madd(&a4, v, w6); madd(&a5, v, w5); madd(&a6, v, w4); if T > 7 { madd(&a7, v, w3) }
        }
        if inside(11) { v = load(xp + 11 * cs); madd(&a5, v, w6); madd(&a6, v, w5); if T > 7 { madd(&a7, v, w4) } }
        if inside(12) { v = load(xp + 12 * cs); madd(&a6, v, w6); if T > 7 { madd(&a7, v, w5) } }
        if T > 7 && inside(13) { v = load(xp + 13 * cs); madd(&a7, v, w6) }
      }
      (tile.v0, tile.v1, tile.v2, tile.v3, tile.v4, tile.v5, tile.v6) = (a0, a1, a2, a3, a4, a5, a6)
      if T > 7 { tile.v7 = a7 }
    }

    /// ``accumulate7(_:_:_:_:_:_:columnStride:skipsLeading:skipsTrailing:)`` for 14 output columns (`left`: columns
    /// 0…6, `right`: 7…13), with 16-lane blocks: each output is the same sum in the same order (the same bits as two
    /// 7-column tiles).
    ///
    /// 14 accumulators + 7 weights + 1 input are 22 of AVX-512's 32 registers. Each of the 20 input columns a kernel
    /// row reaches is loaded once for up to 7 outputs (27 loads per 98 FMAs, against 20 per 49), and 14 independent
    /// chains leave the two FMA pipes (4 cycles of latency each) work to spare where 7 or 8 leave none.
    /// `skipsLeading` / `skipsTrailing` leave out the 3 input columns beyond the row's start / end.
    ///
    /// What it saves most is L1 misses: a tile's loads of one channel block are lines `C` floats apart, which at
    /// C ≥ 128 share a few L1 sets, and 20 columns for 14 outputs hold fewer of them than 14 for 8 (two 8-column
    /// tiles). Measured on an Intel Xeon (one thread, 56×56, N · C = 256, best of 100 in one process, two runs
    /// each): forward at C = 128 91–93 → 106–109 GFLOP/s, at C = 256 81–84 → 99–100; C = 32 and 64 unchanged
    /// within the noise (C = 16, whose lines fill every set, runs at 161).
    @inline(__always)
    static func accumulate7x14(
      _ left: inout Tile, _ right: inout Tile, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>,
      _ x: Int, _ weight: UnsafePointer<Float>, columnStride cs: Int, skipsLeading: Bool, skipsTrailing: Bool
    ) {
      var a0 = left.v0, a1 = left.v1, a2 = left.v2, a3 = left.v3, a4 = left.v4, a5 = left.v5, a6 = left.v6
      var a7 = right.v0, a8 = right.v1, a9 = right.v2, a10 = right.v3, a11 = right.v4, a12 = right.v5
      var a13 = right.v6
      let L = L
      for kh in khRange {
        let wp = weight + kh &* (7 * L)
        let w0 = load(wp), w1 = load(wp + L), w2 = load(wp + 2 * L), w3 = load(wp + 3 * L)
        let w4 = load(wp + 4 * L), w5 = load(wp + 5 * L), w6 = load(wp + 6 * L)
        // One pointer stepped a column at a time: 20 offsets `i · cs` would not fit the general registers.
        var column = rows[kh] + x
        var v: V
        if !skipsLeading { v = load(column); madd(&a0, v, w0) }
        column += cs
        if !skipsLeading { v = load(column); madd(&a1, v, w0); madd(&a0, v, w1) }
        column += cs
        if !skipsLeading { v = load(column); madd(&a2, v, w0); madd(&a1, v, w1); madd(&a0, v, w2) }
        column += cs
        v = load(column); madd(&a3, v, w0); madd(&a2, v, w1); madd(&a1, v, w2); madd(&a0, v, w3)
        column += cs
        v = load(column); madd(&a4, v, w0); madd(&a3, v, w1); madd(&a2, v, w2); madd(&a1, v, w3); madd(&a0, v, w4)
        column += cs
        v = load(column); madd(&a5, v, w0); madd(&a4, v, w1); madd(&a3, v, w2); madd(&a2, v, w3); madd(&a1, v, w4)
          madd(&a0, v, w5)
        column += cs
        v = load(column); madd(&a6, v, w0); madd(&a5, v, w1); madd(&a4, v, w2); madd(&a3, v, w3); madd(&a2, v, w4)
          madd(&a1, v, w5); madd(&a0, v, w6)
        column += cs
        v = load(column); madd(&a7, v, w0); madd(&a6, v, w1); madd(&a5, v, w2); madd(&a4, v, w3); madd(&a3, v, w4)
          madd(&a2, v, w5); madd(&a1, v, w6)
        column += cs
        v = load(column); madd(&a8, v, w0); madd(&a7, v, w1); madd(&a6, v, w2); madd(&a5, v, w3); madd(&a4, v, w4)
          madd(&a3, v, w5); madd(&a2, v, w6)
        column += cs
        v = load(column); madd(&a9, v, w0); madd(&a8, v, w1); madd(&a7, v, w2); madd(&a6, v, w3); madd(&a5, v, w4)
          madd(&a4, v, w5); madd(&a3, v, w6)
        column += cs
        v = load(column); madd(&a10, v, w0); madd(&a9, v, w1); madd(&a8, v, w2); madd(&a7, v, w3); madd(&a6, v, w4)
          madd(&a5, v, w5); madd(&a4, v, w6)
        column += cs
        v = load(column); madd(&a11, v, w0); madd(&a10, v, w1); madd(&a9, v, w2); madd(&a8, v, w3); madd(&a7, v, w4)
          madd(&a6, v, w5); madd(&a5, v, w6)
        column += cs
        v = load(column); madd(&a12, v, w0); madd(&a11, v, w1); madd(&a10, v, w2); madd(&a9, v, w3); madd(&a8, v, w4)
          madd(&a7, v, w5); madd(&a6, v, w6)
        column += cs
        v = load(column); madd(&a13, v, w0); madd(&a12, v, w1); madd(&a11, v, w2); madd(&a10, v, w3); madd(&a9, v, w4)
          madd(&a8, v, w5); madd(&a7, v, w6)
        column += cs
        v = load(column); madd(&a13, v, w1); madd(&a12, v, w2); madd(&a11, v, w3); madd(&a10, v, w4); madd(&a9, v, w5)
          madd(&a8, v, w6)
        column += cs
        v = load(column); madd(&a13, v, w2); madd(&a12, v, w3); madd(&a11, v, w4); madd(&a10, v, w5); madd(&a9, v, w6)
        column += cs
        v = load(column); madd(&a13, v, w3); madd(&a12, v, w4); madd(&a11, v, w5); madd(&a10, v, w6)
        column += cs
        if !skipsTrailing { v = load(column); madd(&a13, v, w4); madd(&a12, v, w5); madd(&a11, v, w6) }
        column += cs
        if !skipsTrailing { v = load(column); madd(&a13, v, w5); madd(&a12, v, w6) }
        column += cs
        if !skipsTrailing { v = load(column); madd(&a13, v, w6) }
      }
      (left.v0, left.v1, left.v2, left.v3, left.v4, left.v5, left.v6) = (a0, a1, a2, a3, a4, a5, a6)
      (right.v0, right.v1, right.v2, right.v3, right.v4, right.v5, right.v6) = (a7, a8, a9, a10, a11, a12, a13)
    }

    // MARK: Backward

    /// ``DepthwiseConvolution/backwardWeight(input:outputGradient:weightGradient:biasGradient:batch:height:width:channels:kernelSize:)``
    /// at this width.
    static func backwardWeight(
      input: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
      weightGradient: UnsafeMutablePointer<Float>, biasGradient: UnsafeMutablePointer<Float>?, shape s: Shape
    ) {
      let k = s.kernelSize, C = s.channels
      // Fixed by the shape: the partials are summed in chunk order, the same bits on any thread count.
      let chunks = s.reductionChunks
      let ringCount = PaddedRowRing.storageCount(s)
      let gradientRowCount = s.blocks * s.width * L
      let partialCount = DepthwiseConvolution.partialCount(s)
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
          for row in s.chunkRows(chunk, of: chunks) {
            let khRange = ring.prepare(row: row)
            scatterRow(outputGradient + row * s.width * C, into: gradientRow, shape: s, blockStride: s.width * L)
            weightRow(
              rows: UnsafePointer(rows), khRange: khRange, outputGradient: gradientRow,
              gradientBlockStride: s.width * L, partial: partial, shape: s, hasBias: hasBias
            ) { ring.copyAhead(part: $0 + 1, of: s.blocks) }
          }
        }
      }

      reducePartials(
        first: scratchBase + perChunk - partialCount, stride: perChunk, chunks: chunks, shape: s,
        weightGradient: weightGradient, biasGradient: biasGradient)
      withExtendedLifetime(scratch) {}
    }

    /// Whether the fused backward pass's 7×7 weight gradient reads `x` in place
    /// (``weightRowUnpadded(rows:khRange:outputGradient:gradientBlockStride:partial:shape:hasBias:)``) rather than
    /// from an input ring: for 16-lane blocks, and for 8-lane blocks where the paired tile is not available
    /// (AVX2; with AVX-512 8-lane blocks keep the paired tile, which paid at 28×28, C = 40); rows of at least 7
    /// columns; and only whole blocks, since a partial last block's vector loads would reach past its pixel (past
    /// the tensor's end at the last pixel), where the ring has zero lanes.
    static func weightGradientReadsInputInPlace(_ s: Shape) -> Bool {
      s.kernelSize == 7 && (L == 16 || !s.pairsWeightRows) && s.width >= 7 && s.channels % L == 0
    }

    /// The fused backward pass at this width (see ``DepthwiseConvolution/backward(input:weight:outputGradient:inputGradient:weightGradient:biasGradient:batch:height:width:channels:kernelSize:)``).
    static func backward(
      input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
      inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
      biasGradient: UnsafeMutablePointer<Float>?, shape s: Shape, chunks: Int
    ) {
      if let tiling = inPlaceTiling(s) {
        backwardInPlace(
          input: input, weight: weight, outputGradient: outputGradient, inputGradient: inputGradient,
          weightGradient: weightGradient, biasGradient: biasGradient, shape: s, chunks: chunks, tiling: tiling)
        return
      }
      let k = s.kernelSize, H = s.height, p = s.padding, C = s.channels
      let ringCount = PaddedRowRing.storageCount(s)
      let partialCount = DepthwiseConvolution.partialCount(s)
      let readsInputInPlace = weightGradientReadsInputInPlace(s)
      // Per chunk: the input ring (unless x is read in place), the gradient ring, the weight-gradient partial
      // and the staging row.
      let inputRingCount = readsInputInPlace ? 0 : ringCount
      let perChunk = inputRingCount + ringCount + partialCount + s.stagingCount
      let scratch = Tensor(uninitializedShape: [s.packedWeightCount + s.packedBiasCount + chunks * perChunk])
      let flipped = scratch.buffer.pointer
      let zeroBias = flipped + s.packedWeightCount
      let chunkBase = zeroBias + s.packedBiasCount
      packWeight(weight, into: flipped, shape: s, flipped: true)
      packBias(nil, into: zeroBias, shape: s)
      let hasBias = biasGradient != nil
      let streaming = streamsOutput(inputGradient, tensorsRead: 2, shape: s)

      Parallel.forEach(chunks) { chunk in
        let chunkStart = chunkBase + chunk * perChunk
        let partial = chunkStart + inputRingCount + ringCount
        partial.initialize(repeating: 0, count: partialCount)
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 2 * k) { table in
          let inputRows = table.baseAddress!
          let gradientRows = inputRows + k
          var inputRing: PaddedRowRing? =
            readsInputInPlace ? nil : PaddedRowRing(input: input, shape: s, storage: chunkStart, rows: inputRows)
          var gradientRing = PaddedRowRing(
            input: outputGradient, shape: s, storage: chunkStart + inputRingCount, rows: gradientRows)
          let rows = s.chunkRows(chunk, of: chunks)
          var pending = rows.lowerBound  // the next ∂L/∂y row whose weight-gradient contribution is due
          for row in rows {
            // ∂L/∂x of `row` needs the ∂L/∂y rows within p of it, inside its image; the ring copies
            // those it lacks (at a range's start also the p rows before it, owned by the previous range).
            let khRange = gradientRing.prepare(row: row)
            // Each ∂L/∂y row of this range adds its weight gradient as soon as it is in the ring.
            let lastInRing = row - row % H + Swift.min(H - 1, row % H + p)
            while pending <= Swift.min(lastInRing, rows.upperBound - 1) {
              let h = pending % H
              let outputGradientRow = gradientRing.slot(ofImageRow: h) + p * L
              if readsInputInPlace {
                let inputKh = s.kernelRows(at: h)
                for kh in inputKh { inputRows[kh] = input + (pending - p + kh) * s.width * C }
                // The input row the next call reads first (the last kernel row of the next output row, or the
                // next image's first rows): flattened row `pending + p + 1`.
                let ahead = pending + p + 1
                weightRowUnpadded(
                  rows: UnsafePointer(inputRows), khRange: inputKh, outputGradient: outputGradientRow,
                  gradientBlockStride: s.blockRowCount, partial: partial, shape: s, hasBias: hasBias,
                  prefetching: ahead < s.rows ? input + ahead * s.width * C : nil)
              } else {
                let inputKh = inputRing!.prepare(row: pending)
                weightRow(
                  rows: UnsafePointer(inputRows), khRange: inputKh, outputGradient: outputGradientRow,
                  gradientBlockStride: s.blockRowCount, partial: partial, shape: s, hasBias: hasBias
                ) { inputRing!.copyAhead(part: $0 + 1, of: s.blocks) }
              }
              pending += 1
            }
            forwardRow(
              rows: UnsafePointer(gradientRows), khRange: khRange, weight: flipped, bias: zeroBias,
              output: inputGradient + row * s.width * C, shape: s, streaming: streaming,
              staging: partial + partialCount
            ) { gradientRing.copyAhead(part: $0 + 1, of: s.blocks) }
          }
        }
        if streaming { quadra_store_fence() }
      }

      reducePartials(
        first: chunkBase + inputRingCount + ringCount, stride: perChunk, chunks: chunks, shape: s,
        weightGradient: weightGradient, biasGradient: biasGradient)
      withExtendedLifetime(scratch) {}
    }

    /// The column tiles with which the 7×7 convolution reads its input rows in place, in NHWC, instead of from a
    /// ring of padded rows (``convolveInPlace(input:weight:bias:output:shape:tiling:staging:stagingStride:)``, and `∂L/∂y` in
    /// ``backwardInPlace(input:weight:outputGradient:inputGradient:weightGradient:biasGradient:shape:chunks:tiling:)``):
    /// `eights` 8-column tiles, then `sevens` 7-column tiles, covering the row without overlap (`W = 8·eights +
    /// 7·sevens`, the most 8-column tiles; `eights` is 0 where `W` is a multiple of 7 that no 8-column tile
    /// fits, such as 7, 14, 28, and for 16-lane blocks wherever `W` is a multiple of 7, since they run pairs of
    /// 7-column tiles as 14-column tiles: ``accumulate7x14(_:_:_:_:_:_:columnStride:skipsLeading:skipsTrailing:)``). Nil where the ring's passes run: shapes whose 7×7 weight gradient does not read
    /// `x` in place (``weightGradientReadsInputInPlace(_:)``: 8-lane blocks with AVX-512's paired tile, partial
    /// channel blocks, rows narrower than 7), and widths no such tiling covers.
    ///
    /// 16-lane blocks (AVX-512) take these passes too: 8-column tiles give 8 accumulator chains where the ring's
    /// 7-column tiles give 7 (a full-width 512-bit FMA pipe pair needs 8), and no row is copied. Measured on an
    /// Intel Xeon (one thread, N = 32 and 4, 56×56, C = 64, best of 20 in one process, old and new alternated
    /// twice): forward 85–93 → 117–126 GFLOP/s, fused backward 96–103 → 114–118 (N = 4: 99 → 132–134 and
    /// 104–105 → 121–123).
    static func inPlaceTiling(_ s: Shape) -> (eights: Int, sevens: Int)? {
      guard (DepthwiseConvolution.rowsInPlaceOverride ?? true) && weightGradientReadsInputInPlace(s)
      else { return nil }
      let W = s.width
      // 16-lane rows that 7-column tiles cover run in 14-column tiles (``sevenTapRowInPlace``).
      if L == 16 && W % 7 == 0 { return (0, W / 7) }
      if let eights = DepthwiseConvolution.eightColumnTiles(width: W) { return (eights, (W - 8 * eights) / 7) }
      return W % 7 == 0 ? (0, W / 7) : nil
    }

    /// The fused backward pass with both `x` and `∂L/∂y` read where they are, in NHWC, by the 7×7 tiles: no
    /// padded-row ring, no row copies. The ring's copies (each `∂L/∂y` element loaded and stored once more,
    /// besides the loads that use it) were 7–8% of the pass on Zen 3; the tiles read each input column from an NHWC
    /// row, `C` floats apart, and leave out the 3 columns beyond each end of the row (``accumulate7(_:_:_:_:_:_:columnStride:skipsLeading:skipsTrailing:)``).
    /// Each output row adds the weight gradient of its own `∂L/∂y` row, then computes its `∂L/∂x` row; the rows
    /// a later row reads first (`x` and `∂L/∂y` at `row + p + 1`) are prefetched into L2 a slice at a time (per channel
    /// block for `x`, per tile position for `∂L/∂y`).
    static func backwardInPlace(
      input: UnsafePointer<Float>, weight: UnsafePointer<Float>, outputGradient: UnsafePointer<Float>,
      inputGradient: UnsafeMutablePointer<Float>, weightGradient: UnsafeMutablePointer<Float>,
      biasGradient: UnsafeMutablePointer<Float>?, shape s: Shape, chunks: Int, tiling: (eights: Int, sevens: Int)
    ) {
      let k = s.kernelSize, H = s.height, p = s.padding, C = s.channels, rowCount = s.width * C
      let partialCount = DepthwiseConvolution.partialCount(s)
      // Per chunk: the weight-gradient partial and the staging row.
      let perChunk = partialCount + s.stagingCount
      let scratch = Tensor(uninitializedShape: [s.packedWeightCount + chunks * perChunk])
      let flipped = scratch.buffer.pointer
      let chunkBase = flipped + s.packedWeightCount
      packWeight(weight, into: flipped, shape: s, flipped: true)
      let hasBias = biasGradient != nil
      let streaming = streamsOutput(inputGradient, tensorsRead: 2, shape: s)
      let staged = streaming && s.stagesRows

      Parallel.forEach(chunks) { chunk in
        let partial = chunkBase + chunk * perChunk
        let staging = partial + partialCount
        partial.initialize(repeating: 0, count: partialCount)
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: 2 * k) { table in
          let inputRows = table.baseAddress!
          let gradientRows = inputRows + k
          for row in s.chunkRows(chunk, of: chunks) {
            let khRange = s.kernelRows(at: row % H)
            for kh in khRange {
              inputRows[kh] = input + (row - p + kh) * rowCount
              gradientRows[kh] = outputGradient + (row - p + kh) * rowCount
            }
            // The rows the next output row reads first (its last kernel row, or the next image's first rows).
            let ahead = row + p + 1
            weightRowInPlace(
              rows: UnsafePointer(inputRows), khRange: khRange, outputGradient: outputGradient + row * rowCount,
              partial: partial, shape: s, hasBias: hasBias, prefetching: ahead < s.rows ? input + ahead * rowCount : nil)
            sevenTapRowInPlace(
              tiling, UnsafePointer(gradientRows), khRange, flipped, nil,
              staged ? staging : inputGradient + row * rowCount, channels: C, streaming: streaming && !staged,
              prefetching: ahead < s.rows ? outputGradient + ahead * rowCount : nil)
            if staged { streamLines(staging, to: inputGradient + row * rowCount, count: rowCount) }
          }
        }
        if streaming { quadra_store_fence() }
      }

      reducePartials(
        first: chunkBase, stride: perChunk, chunks: chunks, shape: s, weightGradient: weightGradient,
        biasGradient: biasGradient)
      withExtendedLifetime(scratch) {}
    }

    /// One output row of the 7×7 convolution from input rows read in place, in NHWC
    /// (``convolveInPlace(input:weight:bias:output:shape:tiling:staging:stagingStride:)``, and the input gradient of
    /// ``backwardInPlace(input:weight:outputGradient:inputGradient:weightGradient:biasGradient:shape:chunks:tiling:)``):
    /// `tiling`'s 8- and 7-column tiles with the packed `weight` and `bias` (nil: none) of `C / L` whole channel
    /// blocks, stored `C` floats apart at `output` (with streaming stores when `streaming`: 16-lane blocks, whole
    /// aligned lines). `next` (a row a later call reads, or nil) is prefetched into L2 a slice per tile position.
    ///
    /// Tile position by tile position, all channel blocks at each: a pixel's `C` floats are `C / 16` cache lines
    /// holding two or more blocks, so the lines one block's tile loads serve the next blocks' tiles from L1.
    /// Block by block over the row instead, a row's lines (7 rows × W columns) did not stay in L1 until the next
    /// block came back to them: rows `W · C` floats apart map to few L1 sets (the forward pass at N = 2, 56×56,
    /// C = 64 on Zen 3 was 6% slower than the ring's that way).
    static func sevenTapRowInPlace(
      _ tiling: (eights: Int, sevens: Int), _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>,
      _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ output: UnsafeMutablePointer<Float>,
      channels C: Int, streaming: Bool, prefetching next: UnsafePointer<Float>?
    ) {
      let W = 8 * tiling.eights + 7 * tiling.sevens, rowCount = W * C
      var w0 = 0
      while w0 < W {
        // 16-lane blocks run two 7-column tiles as one 14-column tile (``accumulate7x14``).
        let columns = w0 < 8 * tiling.eights ? 8 : L == 16 && W - w0 >= 14 ? 14 : 7
        let x = (w0 - 3) * C, out = output + w0 * C
        let edges = (w0 == 0 ? 1 : 0) | (w0 + columns == W ? 2 : 0)
        @inline(__always) func run<let c: Int, let e: Int>(_ position: TilePosition<c, e>) {
          tilesInPlace(position, rows, khRange, x, weight, bias, out, channels: C, streaming: streaming)
        }
        // Literal positions, so each call runs its own specialization.
        switch (columns, edges) {
        case (8, 0): run(TilePosition<8, 0>())
        case (8, 1): run(TilePosition<8, 1>())
        case (8, 2): run(TilePosition<8, 2>())
        case (8, _): run(TilePosition<8, 3>())
        case (14, 0): run(TilePosition<14, 0>())
        case (14, 1): run(TilePosition<14, 1>())
        case (14, 2): run(TilePosition<14, 2>())
        case (14, _): run(TilePosition<14, 3>())
        case (_, 0): run(TilePosition<7, 0>())
        case (_, 1): run(TilePosition<7, 1>())
        case (_, 2): run(TilePosition<7, 2>())
        default: run(TilePosition<7, 3>())
        }
        if let next {
          // The slice of the row these columns read.
          let begin = rowCount * w0 / W, end = rowCount * (w0 + columns) / W
          prefetch(next + begin, count: end - begin)
        }
        w0 += columns
      }
    }

    /// A tile position of ``sevenTapRowInPlace(_:_:_:_:_:_:channels:streaming:prefetching:)`` as types: `columns` (8, 7
    /// or 14) and
    /// which of the row's ends it touches (`edges`: 1 the first tile, whose 3 input columns on the left lie outside
    /// the row; 2 the last, the 3 on the right; 3 the only tile; 0 an inner one).
    struct TilePosition<let columns: Int, let edges: Int> {}

    /// The tiles at one position of the row, for every channel block. A function of its own taking only pointers
    /// and integers, specialized for each position, so each compiles to one loop of one tile with nothing else
    /// live across it (the reason ``sevenTapTiles8(_:_:_:_:_:_:_:stride:lanes:)`` gives): one function holding all
    /// eight cases spilled registers and ran rows of 7-column tiles 15–22% slower than the ring's tiles. `x` is the
    /// tile's first input column (3 left of its first output column) as an offset into each row.
    @inline(never)
    static func tilesInPlace<let columns: Int, let edges: Int>(
      _ position: TilePosition<columns, edges>, _ rows: UnsafePointer<UnsafePointer<Float>>, _ khRange: Range<Int>,
      _ x: Int, _ weight: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ output: UnsafeMutablePointer<Float>,
      channels C: Int, streaming: Bool
    ) {
      /// Stores the first `T` columns of `tile` at `p`, `C` floats apart.
      @inline(__always) func put(_ tile: Tile, _ T: Int, _ p: UnsafeMutablePointer<Float>) {
        if streaming { tile.storeStreaming(T, p, stride: C) } else { tile.store(T, p, stride: C, lanes: L) }
      }
      var block = 0
      while block < C {
        let start = bias.map { load($0 + block) } ?? .zero
        if columns == 14 {
          var left = Tile(repeating: start), right = Tile(repeating: start)
          accumulate7x14(
            &left, &right, rows, khRange, x + block, weight + block * 49, columnStride: C,
            skipsLeading: edges & 1 != 0, skipsTrailing: edges & 2 != 0)
          put(left, 7, output + block)
          put(right, 7, output + 7 * C + block)
        } else {
          var tile = Tile(repeating: start)
          accumulate7(
            columns, &tile, rows, khRange, x + block, weight + block * 49, columnStride: C,
            skipsLeading: edges & 1 != 0, skipsTrailing: edges & 2 != 0)
          put(tile, columns, output + block)
        }
        block += L
      }
    }

    /// Adds one output row's contribution to the packed partials. For each channel block
    /// and kernel row, up to 8 kernel columns are accumulated in registers over the whole
    /// row; one `dy` load serves all of them (`taps + 1` loads per `taps` FMAs).
    ///
    /// - Parameters:
    ///   - outputGradient: the row's `∂L/∂y`, channel-blocked: column `w` of block `b` at
    ///     `dy + b · gradientBlockStride + w · L`.
    ///   - afterBlock: runs after each channel block with its index (the callers copy rows ahead there).
    @inline(__always)
    static func weightRow(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
      gradientBlockStride: Int, partial: UnsafeMutablePointer<Float>, shape s: Shape, hasBias: Bool,
      afterBlock: (Int) -> Void
    ) {
      let k = s.kernelSize, W = s.width
      for block in 0..<s.blocks {
        let g = dy + block * gradientBlockStride
        if hasBias { addRowSum(g, width: W, to: partial + s.packedWeightCount + block * L) }
        var kh = khRange.lowerBound
        if k == 7 && s.pairsWeightRows {
          // Two kernel rows per pass over the ∂L/∂y row while two remain.
          while kh + 1 < khRange.upperBound {
            let dw = partial + (block * k + kh) * k * L
            weightTile7Pair(
              rows[kh] + block * s.blockRowCount, rows[kh + 1] + block * s.blockRowCount, g, dw, dw + k * L, W)
            kh += 2
          }
        }
        if k == 3 && khRange.count >= 2 {
          // All the kernel rows inside the image in one pass: 9 (6 at the image's top and bottom rows)
          // independent accumulators instead of 3 per pass.
          let x = block * s.blockRowCount, first = khRange.lowerBound
          let dw = partial + (block * 3 + first) * 3 * L
          if khRange.count == 3 {
            weightTile3Taps(rows: 3, rows[0] + x, rows[1] + x, rows[2] + x, g, dw, W)
          } else {
            weightTile3Taps(rows: 2, rows[first] + x, rows[first + 1] + x, rows[first + 1] + x, g, dw, W)
          }
          kh = khRange.upperBound
        }
        for kh in kh..<khRange.upperBound {
          let x = rows[kh] + block * s.blockRowCount
          let dw = partial + (block * k + kh) * k * L
          var kw0 = 0
          while kw0 < k {
            let taps = Swift.min(8, k - kw0)
            let xk = x + kw0 * L, dwk = dw + kw0 * L
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
        afterBlock(block)
      }
    }

    /// `partial += Σ_w dy[w · L]` over one blocked row of `width` columns: a bias gradient's share.
    @inline(__always)
    static func addRowSum(
      _ g: UnsafePointer<Float>, width W: Int, columnStride cs: Int = L, to partial: UnsafeMutablePointer<Float>
    ) {
      // Four partial sums, so the adds do not wait on each other's latency.
      var s0 = V.zero, s1 = V.zero, s2 = V.zero, s3 = V.zero
      var w = 0
      while w + 4 <= W {
        s0 += load(g + w * cs)
        s1 += load(g + (w + 1) * cs)
        s2 += load(g + (w + 2) * cs)
        s3 += load(g + (w + 3) * cs)
        w += 4
      }
      while w < W {
        s0 += load(g + w * cs)
        w += 1
      }
      store(load(partial) + ((s0 + s1) + (s2 + s3)), partial)
    }

    /// ``weightRow(rows:khRange:outputGradient:gradientBlockStride:partial:shape:hasBias:afterBlock:)`` for the
    /// 7×7 kernel with the input rows read where they are, in NHWC (column `w` of block `b` at
    /// `rows[kh] + w · C + b · L`, no pad columns; ``weightTile7Unpadded(_:stride:_:gradientStride:_:_:)``), not from a
    /// padded ring: the fused backward pass then copies only `∂L/∂y`. Rows of at least 7 columns, and channels a
    /// multiple of `L` (every vector load stays inside its pixel).
    ///
    /// The pass is bound by its instructions, not by memory (an AVX2 build at N = 2, 56×56, C = 64 ran at the
    /// same fraction of the peak as at N = 32), and the ring copies were a sixth of its time: each copied
    /// vector is a load and a store besides the loads that use it. Measured on Zen 4 (`bench kernels
    /// --threads 1`, N = 32, 56×56, C = 64, old/new alternated 3×): AVX2 build 0.64–0.65 → 0.70–0.71 of the
    /// peak, AVX-512 (16 lanes, one kernel row per pass instead of the paired tile) 0.74–0.75 → 0.76–0.78.
    ///
    /// `prefetching` (the input row the following call reads first, nil past the tensor's end) is prefetched into
    /// L2 a slice per channel block: otherwise the in-place loads meet each new row in memory, its columns `C`
    /// floats apart, and the hardware prefetcher did not bring them early enough. Measured on Zen 3 (AVX2, one
    /// thread, N = 32, 56×56, C = 64, two alternating runs in one process): the weight-gradient rows alone 8.45 →
    /// 7.84 ms (7.55 with every input row in cache), the fused backward 18.55 → 18.06 ms; `bench kernels` 0.66–0.67
    /// → 0.68 of the peak.
    @inline(never)
    static func weightRowUnpadded(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
      gradientBlockStride: Int, partial: UnsafeMutablePointer<Float>, shape s: Shape, hasBias: Bool,
      prefetching next: UnsafePointer<Float>?
    ) {
      weightRow7(
        rows: rows, khRange: khRange, outputGradient: dy, gradientBlockStride: gradientBlockStride, gradientStep: L,
        partial: partial, shape: s, hasBias: hasBias, prefetching: next)
    }

    /// ``weightRowUnpadded(rows:khRange:outputGradient:gradientBlockStride:partial:shape:hasBias:prefetching:)`` with
    /// `∂L/∂y` read in place too, its columns `C` floats apart (``backwardInPlace(input:weight:outputGradient:inputGradient:weightGradient:biasGradient:shape:chunks:tiling:)``).
    /// A function of its own: with the ring's step `L` a run-time value as well, the ring's pass ran 2–4% slower.
    @inline(never)
    static func weightRowInPlace(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
      partial: UnsafeMutablePointer<Float>, shape s: Shape, hasBias: Bool, prefetching next: UnsafePointer<Float>?
    ) {
      weightRow7(
        rows: rows, khRange: khRange, outputGradient: dy, gradientBlockStride: L, gradientStep: s.channels,
        partial: partial, shape: s, hasBias: hasBias, prefetching: next)
    }

    /// The two passes above, with `∂L/∂y`'s columns `gradientStep` floats apart.
    @inline(__always)
    static func weightRow7(
      rows: UnsafePointer<UnsafePointer<Float>>, khRange: Range<Int>, outputGradient dy: UnsafePointer<Float>,
      gradientBlockStride: Int, gradientStep gs: Int, partial: UnsafeMutablePointer<Float>, shape s: Shape,
      hasBias: Bool, prefetching next: UnsafePointer<Float>?
    ) {
      let W = s.width, C = s.channels, rowCount = W * C
      for block in 0..<s.blocks {
        let g = dy + block * gradientBlockStride
        if hasBias { addRowSum(g, width: W, columnStride: gs, to: partial + s.packedWeightCount + block * L) }
        var kh = khRange.lowerBound
        if s.pairsUnpaddedWeightRows {
          while kh + 1 < khRange.upperBound {
            let dw = partial + (block * 7 + kh) * 7 * L
            weightTile7UnpaddedPair(
              rows[kh] + block * L, rows[kh + 1] + block * L, stride: C, g, gradientStride: gs, dw, dw + 7 * L, W)
            kh += 2
          }
        }
        for kh in kh..<khRange.upperBound {
          weightTile7Unpadded(
            rows[kh] + block * L, stride: C, g, gradientStride: gs, partial + (block * 7 + kh) * 7 * L, W)
        }
        if let next {
          // A slice per block, so the prefetches spread over the row's arithmetic.
          let begin = rowCount * block / s.blocks, end = rowCount * (block + 1) / s.blocks
          prefetch(next + begin, count: end - begin)
        }
      }
    }

    /// `dw[j] += Σ_w x[w + j − 3] · dy[w]` for the 7 taps `j` over one row of `width ≥ 7` columns, with `x`'s
    /// columns `stride` floats apart and zero outside the row: the first and last 3 columns take the taps
    /// that stay inside, the others all 7 from a window of 7 input vectors that slides one column a step.
    @inline(__always)
    static func weightTile7Unpadded(
      _ x: UnsafePointer<Float>, stride: Int, _ dy: UnsafePointer<Float>, gradientStride gs: Int,
      _ dw: UnsafeMutablePointer<Float>, _ width: Int
    ) {
      var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero, a4 = V.zero, a5 = V.zero, a6 = V.zero
      var r0 = load(x), r1 = load(x + stride), r2 = load(x + 2 * stride), r3 = load(x + 3 * stride)
      var r4 = load(x + 4 * stride), r5 = load(x + 5 * stride)
      // Output columns 0, 1, 2: taps 3…6, 2…6, 1…6 (tap j reads input column w + j − 3).
      var g = load(dy)
      madd(&a3, r0, g); madd(&a4, r1, g); madd(&a5, r2, g); madd(&a6, r3, g)
      g = load(dy + gs)
      madd(&a2, r0, g); madd(&a3, r1, g); madd(&a4, r2, g); madd(&a5, r3, g); madd(&a6, r4, g)
      g = load(dy + 2 * gs)
      madd(&a1, r0, g); madd(&a2, r1, g); madd(&a3, r2, g); madd(&a4, r3, g); madd(&a5, r4, g); madd(&a6, r5, g)
      // Columns 3 ..< width − 3: all taps; r0…r5 hold input columns w − 3 … w + 2.
      var xp = x + 6 * stride, gp = dy + 3 * gs
      for _ in 3..<(width - 3) {
        let r6 = load(xp)
        g = load(gp)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r0, r1, r2, r3, r4, r5, r6, g)
        (r0, r1, r2, r3, r4, r5) = (r1, r2, r3, r4, r5, r6)
        xp += stride
        gp += gs
      }
      // Columns width − 3, − 2, − 1: taps 0…5, 0…4, 0…3; r0…r5 hold input columns width − 6 … width − 1.
      g = load(gp)
      madd(&a0, r0, g); madd(&a1, r1, g); madd(&a2, r2, g); madd(&a3, r3, g); madd(&a4, r4, g); madd(&a5, r5, g)
      g = load(gp + gs)
      madd(&a0, r1, g); madd(&a1, r2, g); madd(&a2, r3, g); madd(&a3, r4, g); madd(&a4, r5, g)
      g = load(gp + 2 * gs)
      madd(&a0, r2, g); madd(&a1, r3, g); madd(&a2, r4, g); madd(&a3, r5, g)
      add7(a0, a1, a2, a3, a4, a5, a6, to: dw)
    }

    /// ``weightTile7Unpadded(_:stride:_:gradientStride:_:_:)`` for two kernel rows at once (`xA` into `dwA`, `xB` into
    /// `dwB`), with the same sums in the same order (the same bits as two single passes).
    ///
    /// One kernel row gives 7 independent accumulator chains, each waiting on its previous FMA every column: where
    /// a 512-bit FMA takes 4 cycles on each of two full-width pipes (Intel; ``CPUInfo/fullWidth512``), 8 chains keep
    /// the unit busy, so 7 cap the tile at 7/8 of the peak before anything else. Two rows give 14 chains, and each
    /// `∂L/∂y` load serves 14 FMAs: 14 accumulators, two windows of 7 inputs and `∂L/∂y` are 29 of AVX-512's 32
    /// registers (``DepthwiseConvolution/Shape/pairsUnpaddedWeightRows``).
    @inline(__always)
    static func weightTile7UnpaddedPair(
      _ xA: UnsafePointer<Float>, _ xB: UnsafePointer<Float>, stride: Int, _ dy: UnsafePointer<Float>,
      gradientStride gs: Int, _ dwA: UnsafeMutablePointer<Float>, _ dwB: UnsafeMutablePointer<Float>, _ width: Int
    ) {
      var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero, a4 = V.zero, a5 = V.zero, a6 = V.zero
      var b0 = V.zero, b1 = V.zero, b2 = V.zero, b3 = V.zero, b4 = V.zero, b5 = V.zero, b6 = V.zero
      var r0 = load(xA), r1 = load(xA + stride), r2 = load(xA + 2 * stride), r3 = load(xA + 3 * stride)
      var r4 = load(xA + 4 * stride), r5 = load(xA + 5 * stride)
      var q0 = load(xB), q1 = load(xB + stride), q2 = load(xB + 2 * stride), q3 = load(xB + 3 * stride)
      var q4 = load(xB + 4 * stride), q5 = load(xB + 5 * stride)
      // Output columns 0, 1, 2: taps 3…6, 2…6, 1…6 (tap j reads input column w + j − 3).
      var g = load(dy)
      madd(&a3, r0, g); madd(&a4, r1, g); madd(&a5, r2, g); madd(&a6, r3, g)
      madd(&b3, q0, g); madd(&b4, q1, g); madd(&b5, q2, g); madd(&b6, q3, g)
      g = load(dy + gs)
      madd(&a2, r0, g); madd(&a3, r1, g); madd(&a4, r2, g); madd(&a5, r3, g); madd(&a6, r4, g)
      madd(&b2, q0, g); madd(&b3, q1, g); madd(&b4, q2, g); madd(&b5, q3, g); madd(&b6, q4, g)
      g = load(dy + 2 * gs)
      madd(&a1, r0, g); madd(&a2, r1, g); madd(&a3, r2, g); madd(&a4, r3, g); madd(&a5, r4, g); madd(&a6, r5, g)
      madd(&b1, q0, g); madd(&b2, q1, g); madd(&b3, q2, g); madd(&b4, q3, g); madd(&b5, q4, g); madd(&b6, q5, g)
      // Columns 3 ..< width − 3: all taps; r0…r5 and q0…q5 hold input columns w − 3 … w + 2.
      var xp = xA + 6 * stride, yp = xB + 6 * stride, gp = dy + 3 * gs
      for _ in 3..<(width - 3) {
        let r6 = load(xp), q6 = load(yp)
        g = load(gp)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r0, r1, r2, r3, r4, r5, r6, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q0, q1, q2, q3, q4, q5, q6, g)
        (r0, r1, r2, r3, r4, r5) = (r1, r2, r3, r4, r5, r6)
        (q0, q1, q2, q3, q4, q5) = (q1, q2, q3, q4, q5, q6)
        xp += stride
        yp += stride
        gp += gs
      }
      // Columns width − 3, − 2, − 1: taps 0…5, 0…4, 0…3; the windows hold input columns width − 6 … width − 1.
      g = load(gp)
      madd(&a0, r0, g); madd(&a1, r1, g); madd(&a2, r2, g); madd(&a3, r3, g); madd(&a4, r4, g); madd(&a5, r5, g)
      madd(&b0, q0, g); madd(&b1, q1, g); madd(&b2, q2, g); madd(&b3, q3, g); madd(&b4, q4, g); madd(&b5, q5, g)
      g = load(gp + gs)
      madd(&a0, r1, g); madd(&a1, r2, g); madd(&a2, r3, g); madd(&a3, r4, g); madd(&a4, r5, g)
      madd(&b0, q1, g); madd(&b1, q2, g); madd(&b2, q3, g); madd(&b3, q4, g); madd(&b4, q5, g)
      g = load(gp + 2 * gs)
      madd(&a0, r2, g); madd(&a1, r3, g); madd(&a2, r4, g); madd(&a3, r5, g)
      madd(&b0, q2, g); madd(&b1, q3, g); madd(&b2, q4, g); madd(&b3, q5, g)
      add7(a0, a1, a2, a3, a4, a5, a6, to: dwA)
      add7(b0, b1, b2, b3, b4, b5, b6, to: dwB)
    }

    /// `dw[j] += Σ_w x[w + j] · dy[w]` for `j < taps`, over one blocked row.
    @inline(__always)
    static func weightTile(
      _ taps: Int, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>,
      _ width: Int
    ) {
      var sums = Tile(repeating: .zero)
      var xp = x, gp = dy
      for _ in 0..<width {
        sums.addProducts(taps, xp, load(gp))
        xp += L
        gp += L
      }
      sums.forEachColumn(taps) { store(load(dw + $1 * L) + $0, dw + $1 * L) }
    }

    /// `weightTile` for 3 taps of `rows` (2 or 3, a literal) consecutive kernel rows at once:
    /// `dw[3·r + j] += Σ_w x_r[w + j] · dy[w]` for the rows `x0`, `x1`, `x2` (`x2` unused when `rows` is 2).
    ///
    /// Three taps of one row give only 3 independent FMA chains, each waiting on its previous FMA every
    /// step (4 cycles on Zen 4): a third of the FMA throughput, whatever the width. Whole 3 × 3 kernels
    /// keep 9 chains in flight for one `dy` load per 9 FMAs. The quadratic mixers of the 28 × 28 models
    /// (k = 3) spend most of their weight-gradient time here: N = 64, 14 × 14, C = 40 fused backward
    /// 1.75 → 1.32 ms (one thread, Zen 4, loaded machine).
    @inline(__always)
    static func weightTile3Taps(
      rows: Int, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
      _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>, _ width: Int
    ) {
      let L = L
      var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero, a4 = V.zero
      var a5 = V.zero, a6 = V.zero, a7 = V.zero, a8 = V.zero
      var p0 = x0, p1 = x1, p2 = x2, gp = dy
      for _ in 0..<width {
        let g = load(gp)
        madd(&a0, load(p0), g); madd(&a1, load(p0 + L), g); madd(&a2, load(p0 + 2 * L), g)
        madd(&a3, load(p1), g); madd(&a4, load(p1 + L), g); madd(&a5, load(p1 + 2 * L), g)
        if rows > 2 { madd(&a6, load(p2), g); madd(&a7, load(p2 + L), g); madd(&a8, load(p2 + 2 * L), g) }
        p0 += L
        p1 += L
        p2 += L
        gp += L
      }
      add3(a0, a1, a2, to: dw)
      add3(a3, a4, a5, to: dw + 3 * L)
      if rows > 2 { add3(a6, a7, a8, to: dw + 6 * L) }
    }

    /// `dw[t] += a_t` for the 3 taps of one kernel row (vectors `L` floats apart).
    @inline(__always)
    static func add3(_ a0: V, _ a1: V, _ a2: V, to dw: UnsafeMutablePointer<Float>) {
      store(load(dw) + a0, dw)
      store(load(dw + L) + a1, dw + L)
      store(load(dw + 2 * L) + a2, dw + 2 * L)
    }

    /// `weightTile` for 7 taps: the 7 input columns `x[w ..< w + 7]` that step `w` needs
    /// stay in registers and slide by one column per step, so each step loads one `dy`
    /// and one new input vector for 7 FMAs (unrolled by 7 so the window rotates through
    /// fixed register names).
    @inline(__always)
    static func weightTile7(
      _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dw: UnsafeMutablePointer<Float>, _ width: Int
    ) {
      let L = L
      var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero
      var a4 = V.zero, a5 = V.zero, a6 = V.zero
      var xp = x, gp = dy, w = 0
      var r0 = load(xp), r1 = load(xp + L), r2 = load(xp + 2 * L), r3 = load(xp + 3 * L)
      var r4 = load(xp + 4 * L), r5 = load(xp + 5 * L), r6 = V.zero
      var g = V.zero
      while w + 7 <= width {
        // Step u (0...6) loads x[w + u + 6] and reads x[w + u + t] from r((u + t) % 7) for tap t.
        g = load(gp); r6 = load(xp + 6 * L)
        madd(&a0, r0, g); madd(&a1, r1, g); madd(&a2, r2, g); madd(&a3, r3, g)
        madd(&a4, r4, g); madd(&a5, r5, g); madd(&a6, r6, g)
        g = load(gp + L); r0 = load(xp + 7 * L)
        madd(&a0, r1, g); madd(&a1, r2, g); madd(&a2, r3, g); madd(&a3, r4, g)
        madd(&a4, r5, g); madd(&a5, r6, g); madd(&a6, r0, g)
        g = load(gp + 2 * L); r1 = load(xp + 8 * L)
        madd(&a0, r2, g); madd(&a1, r3, g); madd(&a2, r4, g); madd(&a3, r5, g)
        madd(&a4, r6, g); madd(&a5, r0, g); madd(&a6, r1, g)
        g = load(gp + 3 * L); r2 = load(xp + 9 * L)
        madd(&a0, r3, g); madd(&a1, r4, g); madd(&a2, r5, g); madd(&a3, r6, g)
        madd(&a4, r0, g); madd(&a5, r1, g); madd(&a6, r2, g)
        g = load(gp + 4 * L); r3 = load(xp + 10 * L)
        madd(&a0, r4, g); madd(&a1, r5, g); madd(&a2, r6, g); madd(&a3, r0, g)
        madd(&a4, r1, g); madd(&a5, r2, g); madd(&a6, r3, g)
        g = load(gp + 5 * L); r4 = load(xp + 11 * L)
        madd(&a0, r5, g); madd(&a1, r6, g); madd(&a2, r0, g); madd(&a3, r1, g)
        madd(&a4, r2, g); madd(&a5, r3, g); madd(&a6, r4, g)
        g = load(gp + 6 * L); r5 = load(xp + 12 * L)
        madd(&a0, r6, g); madd(&a1, r0, g); madd(&a2, r1, g); madd(&a3, r2, g)
        madd(&a4, r3, g); madd(&a5, r4, g); madd(&a6, r5, g)
        xp += 7 * L
        gp += 7 * L
        w += 7
      }
      while w < width {
        g = load(gp)
        madd(&a0, load(xp), g); madd(&a1, load(xp + L), g); madd(&a2, load(xp + 2 * L), g)
        madd(&a3, load(xp + 3 * L), g); madd(&a4, load(xp + 4 * L), g); madd(&a5, load(xp + 5 * L), g)
        madd(&a6, load(xp + 6 * L), g)
        xp += L
        gp += L
        w += 1
      }
      add7(a0, a1, a2, a3, a4, a5, a6, to: dw)
    }

    /// ``weightTile7(_:_:_:_:)`` for two kernel rows at once (`xA` into `dwA`, `xB` into `dwB`): each
    /// `dy` load serves 14 FMAs instead of 7, and the per-call setup (window loads) and the 14
    /// read-modify-writes of the partial sums are spread over twice the FMAs. It needs 14 accumulators,
    /// 14 window vectors and `dy`: 29 registers, so only where there are 32 (AVX-512; see
    /// ``DepthwiseConvolution/Shape/pairsWeightRows``). It pays where rows are short, so each call
    /// has few steps: measured on Zen 4 (one thread, loaded machine, 4 alternating runs), weight
    /// gradient at N = 64, 28×28, C = 40 (8 lanes) best 0.45 → 0.49 of peak, fused backward 0.56 → 0.59;
    /// at 56×56 and 14×14 with C = 64...320 the two tiles were within the noise.
    ///
    /// Written out rather than as `weightTile7` over a row count: with the tiles as structs indexed by
    /// a rotating slot the compiler kept them on the stack (10× slower).
    @inline(__always)
    static func weightTile7Pair(
      _ xA: UnsafePointer<Float>, _ xB: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
      _ dwA: UnsafeMutablePointer<Float>, _ dwB: UnsafeMutablePointer<Float>, _ width: Int
    ) {
      let L = L
      var a0 = V.zero, a1 = V.zero, a2 = V.zero, a3 = V.zero, a4 = V.zero, a5 = V.zero, a6 = V.zero
      var b0 = V.zero, b1 = V.zero, b2 = V.zero, b3 = V.zero, b4 = V.zero, b5 = V.zero, b6 = V.zero
      var xp = xA, yp = xB, gp = dy, w = 0
      var r0 = load(xp), r1 = load(xp + L), r2 = load(xp + 2 * L), r3 = load(xp + 3 * L)
      var r4 = load(xp + 4 * L), r5 = load(xp + 5 * L), r6 = V.zero
      var q0 = load(yp), q1 = load(yp + L), q2 = load(yp + 2 * L), q3 = load(yp + 3 * L)
      var q4 = load(yp + 4 * L), q5 = load(yp + 5 * L), q6 = V.zero
      var g = V.zero
      while w + 7 <= width {
        g = load(gp); r6 = load(xp + 6 * L); q6 = load(yp + 6 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r0, r1, r2, r3, r4, r5, r6, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q0, q1, q2, q3, q4, q5, q6, g)
        g = load(gp + L); r0 = load(xp + 7 * L); q0 = load(yp + 7 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r1, r2, r3, r4, r5, r6, r0, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q1, q2, q3, q4, q5, q6, q0, g)
        g = load(gp + 2 * L); r1 = load(xp + 8 * L); q1 = load(yp + 8 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r2, r3, r4, r5, r6, r0, r1, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q2, q3, q4, q5, q6, q0, q1, g)
        g = load(gp + 3 * L); r2 = load(xp + 9 * L); q2 = load(yp + 9 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r3, r4, r5, r6, r0, r1, r2, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q3, q4, q5, q6, q0, q1, q2, g)
        g = load(gp + 4 * L); r3 = load(xp + 10 * L); q3 = load(yp + 10 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r4, r5, r6, r0, r1, r2, r3, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q4, q5, q6, q0, q1, q2, q3, g)
        g = load(gp + 5 * L); r4 = load(xp + 11 * L); q4 = load(yp + 11 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r5, r6, r0, r1, r2, r3, r4, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q5, q6, q0, q1, q2, q3, q4, g)
        g = load(gp + 6 * L); r5 = load(xp + 12 * L); q5 = load(yp + 12 * L)
        madd7(&a0, &a1, &a2, &a3, &a4, &a5, &a6, r6, r0, r1, r2, r3, r4, r5, g)
        madd7(&b0, &b1, &b2, &b3, &b4, &b5, &b6, q6, q0, q1, q2, q3, q4, q5, g)
        xp += 7 * L
        yp += 7 * L
        gp += 7 * L
        w += 7
      }
      if w < width {
        weightTile7(xp, gp, dwA, width - w)
        weightTile7(yp, gp, dwB, width - w)
      }
      add7(a0, a1, a2, a3, a4, a5, a6, to: dwA)
      add7(b0, b1, b2, b3, b4, b5, b6, to: dwB)
    }

    /// `dw[t] += a_t` for the 7 taps (vectors `L` floats apart).
    @inline(__always)
    static func add7(
      _ a0: V, _ a1: V, _ a2: V, _ a3: V, _ a4: V, _ a5: V, _ a6: V, to dw: UnsafeMutablePointer<Float>
    ) {
      store(load(dw) + a0, dw)
      store(load(dw + L) + a1, dw + L)
      store(load(dw + 2 * L) + a2, dw + 2 * L)
      store(load(dw + 3 * L) + a3, dw + 3 * L)
      store(load(dw + 4 * L) + a4, dw + 4 * L)
      store(load(dw + 5 * L) + a5, dw + 5 * L)
      store(load(dw + 6 * L) + a6, dw + 6 * L)
    }

    /// `t`-th accumulator `+= x_t · g` for the 7 taps of one step of the sliding window.
    @inline(__always)
    static func madd7(
      _ a0: inout V, _ a1: inout V, _ a2: inout V, _ a3: inout V, _ a4: inout V, _ a5: inout V, _ a6: inout V,
      _ x0: V, _ x1: V, _ x2: V, _ x3: V, _ x4: V, _ x5: V, _ x6: V, _ g: V
    ) {
      madd(&a0, x0, g); madd(&a1, x1, g); madd(&a2, x2, g); madd(&a3, x3, g)
      madd(&a4, x4, g); madd(&a5, x5, g); madd(&a6, x6, g)
    }
  }
}

/// The fused residual MLP of a MetaFormer block (see ``Backend/residualMLP(_:parameters:epsilon:into:saved:)``),
/// computed in blocks of rows that stay in L2.
///
/// Unfused, the block's second half is seven passes over activation tensors (LayerNorm, the expanding
/// product, bias + GELU, the projecting product, γ ⊙, the residual add, each written out and read
/// back), and the 28×28 models' tensors (64 · 14² rows × 40–160 channels, 2–8 MiB) do not fit in L2:
/// every pass streams from L3 or memory, so their shallow products (k = 40–320) and the elementwise
/// passes run at the memory's pace, not the FMA units'. Here each block of rows goes through all
/// the steps while its intermediates (`x̂`, `GELU(h)`, and in the backward pass the gradients) stay
/// in per-thread scratch sized to a quarter of L2; only `x`, `y` and what the backward pass needs
/// (`h`, `o`, the row statistics) touch memory.
///
/// The backward pass recomputes `x̂` (from the saved statistics) and `GELU(h)` per block and sums
/// the parameter gradients per chunk of blocks, in a fixed chunk order (the chunks depend on the
/// shapes only), so the results are the same bits on any thread count.
enum ResidualMLPKernels {
  /// The sizes of one call: `rows` rows of `channels` (C), hidden width `hidden` (H), processed in
  /// `blocks` blocks of at most `blockRows` rows.
  struct Shape {
    let rows: Int, channels: Int, hidden: Int
    /// The tallest block's rows (the scratch of a block is sized for it).
    let blockRows: Int
    /// The number of blocks.
    let blocks: Int
    /// The rows of one GEMM micro-kernel tile; blocks start on multiples of it.
    let tileRows: Int

    /// Whether fusing pays. In L2: the weights and their gradient sums (4 · H · C floats) must fit in half
    /// of L2 next to the block's rows (or every block of the backward pass would stream them from L3), and
    /// the rows left room for must number at least ``minimumBlockRows``. Otherwise in L3, when the unfused
    /// passes would stream from memory, or when the tensors are small enough that two threads share the blocks (see
    /// ``fusesInLevel3(rows:hidden:weightBytes:bytesPerRow:level3CacheBytes:partialCount:)``).
    ///
    /// Where both would fuse, L3's blocks are taken when L2 holds fewer rows than an L3 block's minimum
    /// (``minimumLevel3BlockRows``): a short block pays, per block, for reading and writing the weight
    /// gradients' partial sums (its products with `k` = its rows) and for the products' part-filled last
    /// tiles, and Zen 5's full-width FMAs make those costs count. Measured on Zen 5 (1 MiB L2, 32 MiB L3; one
    /// process alternating block heights call by call, best of 6–20, both blocks on whole 14-row tiles):
    /// quadranet-t's first stage at batch 16 (50,176 rows, C = 64, H = 256; L2 holds 118 rows) one thread
    /// forward 18.9 → 17.7 ms, backward 41.8 → 37.4 ms in blocks of 630; two threads 9.9 → 8.7 and 21.2 → 18.3 ms;
    /// quadranet-28's second stage at batch 64 (3,136 rows, C = 80, H = 160; 164 rows) one thread 0.85 → 0.83 and
    /// 1.85 → 1.75 ms, two threads 0.47 → 0.43 and 1.00 → 0.88 ms in blocks of 784.
    let fuses: Bool

    init(
      rows: Int, channels: Int, hidden: Int, level2CacheBytes: Int = CPUInfo.current.level2CacheBytes,
      level3CacheBytes: Int = CPUInfo.current.level3CacheBytes, tileRows: Int = GEMM.currentShape.mr
    ) {
      (self.rows, self.channels, self.hidden) = (rows, channels, hidden)
      let floatBytes = MemoryLayout<Float>.stride
      let weightBytes = 4 * hidden * channels * floatBytes
      let fits = weightBytes <= level2CacheBytes / 2
      // The backward pass touches about 6 C + 5 H floats per row of a block (x, dy, o, x̂, ∂o, ∂x̂, dx;
      // h, GELU(h), ∂h, and until stop 23 a GELU′(h) row, kept in the count so the measured block heights
      // stay); the rows fill what the weights leave of L2. Measured on an Intel
      // Xeon (AVX-512, 2 MiB L2; quadranet-28, batch 64, one thread): blocks in a quarter of L2 ran
      // no faster than the unfused ops, blocks in all of it 5–10% faster, in a sixteenth 30% slower.
      let bytesPerRow = (6 * channels + 5 * hidden) * floatBytes
      let fittingRows = (level2CacheBytes - Swift.min(weightBytes, level2CacheBytes / 2)) / bytesPerRow
      let fusesInLevel2 = fits && fittingRows >= Self.minimumBlockRows
      let level3Rows = Self.fusesInLevel3(
        rows: rows, hidden: hidden, weightBytes: weightBytes, bytesPerRow: bytesPerRow,
        level3CacheBytes: level3CacheBytes, partialCount: Self.partialCount(channels: channels, hidden: hidden))
      let prefersLevel3 = level3Rows != nil && (!fusesInLevel2 || fittingRows < Self.minimumLevel3BlockRows)
      let planned =
        prefersLevel3 ? level3Rows! : fusesInLevel2 ? Self.level2BlockRows(rows: rows, limit: fittingRows) : fittingRows
      let limit = Self.blockRowsOverride ?? Swift.max(16, Swift.min(4096, planned))
      self.tileRows = Swift.max(1, tileRows)
      let tiles = Swift.max(1, (rows + self.tileRows - 1) / self.tileRows)
      blocks = Swift.max(1, Swift.min(tiles, (rows + limit - 1) / Swift.max(1, limit)))
      blockRows = Swift.min(rows, self.tileRows * ((tiles + blocks - 1) / blocks))
      fuses = Self.fusesOverride ?? (fusesInLevel2 || level3Rows != nil)
    }

    /// The block height for fusing in L3, or nil when that does not pay.
    ///
    /// Where the weights crowd L2 (Zen 2/3's 512 KiB: quadranet-t's first stage, C = 64, H = 256, has
    /// 256 KiB of weights and gradient sums, and would leave room for 39 rows), the unfused ops pass over
    /// whole activation tensors; once the hidden one (rows · H floats) outgrows half of L3 those passes
    /// stream from memory. Blocks of rows that stay in a slice of L3 (an eighth per worker) then still
    /// save the round trips, as long as they are tall enough for the products (≥ 256 rows) and the weights
    /// take at most another eighth. Measured on Zen 3 (512 KiB L2, 32 MiB L3; `bench ops --ops
    /// residualMLP --threads 1`, three alternations, best): quadranet-t's stages 1 and 2 at batch 16
    /// (50,176 rows at C = 64, 12,544 at C = 128) forward 55.5 → 49.4 and 50.1 → 45.7 ms, backward 120 →
    /// 104 and 102 → 92 ms with blocks of 512 rows (1024 alike; 128 and 256, timed once, no better); its third stage
    /// (3,136 rows, C = 256, whose 12.8 MB hidden tensor stays in L3) gained nothing, and the 28² models'
    /// smaller tensors neither (whole steps, stop 26).
    ///
    /// Tensors that stay in L3 are fused too (stop 28), in an even number of equal blocks, at least two, when
    /// there are rows for two blocks of ``minimumLevel3BlockRows`` and the backward pass keeps at least two
    /// chunks of weight-gradient partial sums (`partialCount` floats each; ``backwardChunks(blocks:partialCount:)``):
    /// the unfused ops' seven passes cost more than the L3 round trips they were thought to save. Measured on Zen 3 (512 KiB L2, 32 MiB L3;
    /// one process alternating fused block heights and the unfused ops 8 times, best of 24 calls, forward +
    /// backward): quadranet-28's second stage at batch 64 (3,136 rows, C = 80, H = 160) 6.94–7.01 ms unfused →
    /// 6.52–6.55 ms in blocks of 784 rows on one thread (−6%), 3.92 → 3.34 ms on two (−15%); its third (576
    /// rows, C = 160, H = 320) 4.35–4.43 → 4.27–4.29 ms in two blocks of 288 (−2%), two threads 2.36–3.24 →
    /// 2.23–2.84 ms over four runs, lower in each. One block would leave
    /// the second thread idle (576 rows in one block: 4.31 ms on two threads), hence two at least; with a
    /// single chunk of partial sums the backward runs on one thread (quadranet-t's third stage at batch 16,
    /// C = 256, H = 1024: 76 ms fused against 41 unfused on two threads), hence the bound. Since stop 39 that
    /// stage keeps two chunks (four blocks of 784 rows) and fuses where L3 is large enough for the slices (the
    /// Intel Xeon's 300 MiB, not Zen 3's 32): one process alternating fused and unfused call by call, 10–12 calls
    /// each, best, in two windows: one thread forward 44.71 → 41.36 and 45.44 → 45.28 ms, backward 94.78 → 96.34
    /// and 102.36 → 98.17 ms; two threads forward 22.70 → 22.30 and 20.88 → 20.74 ms, backward 49.83 → 47.00 and
    /// 47.24 → 44.03 ms.
    ///
    /// When the tensors stay in L3 the blocks need not fit an eighth of it: where an eighth holds fewer than
    /// ``minimumLevel3BlockRows`` rows (that stage's 26 KB rows on a 32 MiB L3: 157), they may take a quarter (two
    /// workers' blocks in half of L3: 315 rows, ten blocks of 314). Measured on Zen 5 (1 MiB L2, 32 MiB L3; one
    /// process alternating call by call, best of 12–16): that stage unfused → blocks of 314 rows, one thread
    /// forward 16.31 → 15.62 ms, backward 33.37 → 33.13 ms, two threads 8.70 → 7.93 and 17.68 → 16.80 ms; in an
    /// earlier window, unfused → blocks of 224 or 392 rows, one thread 15.37–15.48 → 15.12–15.18 and 32.57–32.85 →
    /// 31.64–31.81 ms, two threads 8.09–8.32 → 7.55–8.02 and 16.72–17.71 → 16.10–17.27 ms. Quarters (784 rows) ran
    /// about as fast on one thread and 2–5% slower on two (their two blocks, 42 MB, overflow L3).
    static func fusesInLevel3(
      rows: Int, hidden: Int, weightBytes: Int, bytesPerRow: Int, level3CacheBytes: Int, partialCount: Int
    ) -> Int? {
      guard weightBytes <= level3CacheBytes / 8 else { return nil }
      let sliceRows = level3CacheBytes / 8 / bytesPerRow
      let hiddenBytes = rows * hidden * MemoryLayout<Float>.stride
      if hiddenBytes > level3CacheBytes / 2 { return sliceRows >= minimumLevel3BlockRows ? sliceRows : nil }
      // The tensors stay in L3: two workers' blocks may take half of it where an eighth is too short.
      let roomyRows = sliceRows >= minimumLevel3BlockRows ? sliceRows : level3CacheBytes / 4 / bytesPerRow
      guard rows >= 2 * minimumLevel3BlockRows, roomyRows >= minimumLevel3BlockRows else { return nil }
      let blockRows = balancedBlockRows(rows: rows, limit: Swift.min(roomyRows, (rows + 1) / 2))
      let blocks = (rows + blockRows - 1) / blockRows
      return backwardChunks(blocks: blocks, partialCount: partialCount) >= 2 ? blockRows : nil
    }

    /// The height of equal blocks, in an even number, that cut `rows` into blocks of at most `limit` rows
    /// (`limit` itself when `rows ≤ limit`; the last block is short by less than one row per block, and the
    /// count stays even whenever the blocks are taller than their number, as the L3 path's ≥ 256-row blocks,
    /// a few dozen at most, always are). The workers take contiguous runs of blocks, so equal blocks in
    /// an even number give two threads equal shares. It depends on the shapes and caches only, never on the
    /// thread count: the backward pass's partial sums, and its bits, stay the same on any number of threads.
    static func balancedBlockRows(rows: Int, limit: Int) -> Int {
      guard rows > limit, limit > 0 else { return limit }
      var count = (rows + limit - 1) / limit
      count += count % 2
      return (rows + count - 1) / count
    }

    /// The height of the blocks fused in L2: an even number of equal blocks of at most `limit` rows
    /// (``balancedBlockRows(rows:limit:)``), so that two threads get equal shares, unless those would be shorter
    /// than ``minimumBlockRows``; then an odd count is rounded down instead of up, and the blocks overshoot
    /// `limit` by less than one block's share (`limit` counts a row's footprint generously: a GELU′ row that
    /// no longer exists). Rows that fit one block stay one block.
    ///
    /// On the Intel Xeon's 2 MiB L2 quadranet-28's second and third stages at batch 64 fuse in L2 (3,136 rows
    /// within 369 per block, 576 within 124): nine and five blocks left one of two threads a block more than the
    /// other (4 + 5, 2 + 3); now ten of 314 and four of 144. Measured there (`bench ops --ops residualMLP
    /// --variant 'x[64,' --threads 2 --repetitions 20`, two alternations): the third stage's forward 0.63 →
    /// 0.56–0.57 ms, backward 1.34–1.35 → 1.18–1.21 ms; the second's forward 0.77–0.78 → 0.69–0.73 ms, backward
    /// 1.60 → 1.54 ms; one thread unchanged within the noise.
    static func level2BlockRows(rows: Int, limit: Int) -> Int {
      let balanced = balancedBlockRows(rows: rows, limit: limit)
      guard rows > limit, balanced < minimumBlockRows else { return balanced }
      let count = Swift.max(2, (rows + limit - 1) / limit / 2 * 2)
      return (rows + count - 1) / count
    }

    /// The fewest rows of a block fused in L3 (see ``fusesInLevel3(rows:hidden:weightBytes:bytesPerRow:level3CacheBytes:partialCount:)``).
    static let minimumLevel3BlockRows = 256

    /// The fewest rows a block may have for the fused kernel to pay: below, its products are too thin
    /// and the weight gradients' partial sums are read and written once per few rows. Measured on an
    /// Intel Xeon (2 MiB L2, one thread): with blocks of 78 rows in its second stage (C = 128, H = 512)
    /// quadranet-t's training step at 224², batch 16, ran ~8% slower than unfused; quadranet-28's third
    /// stage (C = 160, H = 320, blocks of 120 rows) fused was part of its fastest runs.
    static let minimumBlockRows = 112

    /// Forces the blocks' height limit inside a task (tests cross block and chunk boundaries with small shapes).
    @TaskLocal static var blockRowsOverride: Int?
    /// Forces the fused kernel on or off inside a task (tests run both CPU paths on any machine).
    @TaskLocal static var fusesOverride: Bool?

    /// Block `index`'s rows: whole micro-kernel tiles, shared among the blocks as evenly as they go (the
    /// heights differ by one tile at most), so that only the last block's products end on a part-filled tile.
    ///
    /// A part-filled tile costs the micro-kernel as much as a full one, and spills through scratch. Measured on
    /// Zen 5 (one thread, call by call): quadranet-28's second stage at batch 64 in blocks of 157 rows (11 tiles
    /// of 14 and one of 3) forward 0.96 ms, backward 1.92 ms; in blocks of 154 or 168 rows 0.84 and 1.84 ms;
    /// quadranet-t's first stage in blocks of 118 rows 20.1 and 43.6 ms, of 112 or 126 rows 18.8 and 41.5 ms.
    func block(_ index: Int) -> Range<Int> {
      let tiles = (rows + tileRows - 1) / tileRows
      let lower = Swift.min(rows, tileRows * (tiles * index / blocks))
      return lower..<Swift.min(rows, tileRows * (tiles * (index + 1) / blocks))
    }

    /// Floats of one chunk's parameter-gradient partial sums: LN weight and bias, W₁ and b₁, W₂ and b₂, γ.
    var partialCount: Int { Self.partialCount(channels: channels, hidden: hidden) }

    static func partialCount(channels c: Int, hidden h: Int) -> Int { 2 * c + h * c + h + c * h + c + c }
  }

  /// Raw pointers to the parameters (or to gradients of the same shapes).
  struct Pointers {
    let normWeight, normBias, expandWeight, expandBias, projectWeight, projectBias, scale: UnsafeMutablePointer<Float>

    init(_ p: ResidualMLPParameters) {
      normWeight = p.normWeight.buffer.pointer
      normBias = p.normBias.buffer.pointer
      expandWeight = p.expandWeight.buffer.pointer
      expandBias = p.expandBias.buffer.pointer
      projectWeight = p.projectWeight.buffer.pointer
      projectBias = p.projectBias.buffer.pointer
      scale = p.scale.buffer.pointer
    }

    /// The partial sums laid out in one buffer of ``Shape/partialCount`` floats.
    init(partials start: UnsafeMutablePointer<Float>, _ s: Shape) {
      let (c, h) = (s.channels, s.hidden)
      normWeight = start
      normBias = normWeight + c
      expandWeight = normBias + c
      expandBias = expandWeight + h * c
      projectWeight = expandBias + h
      projectBias = projectWeight + c * h
      scale = projectBias + c
    }
  }

  // MARK: Forward

  static func forward(
    _ x: UnsafePointer<Float>, parameters p: Pointers, epsilon: Float, shape s: Shape,
    output y: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>, mlpOutput: UnsafeMutablePointer<Float>,
    mean: UnsafeMutablePointer<Float>, inverseStandardDeviation rstd: UnsafeMutablePointer<Float>
  ) {
    let (c, h) = (s.channels, s.hidden)
    // W₁ᵀ and W₂ᵀ packed once for all blocks (every block's products would repack them).
    let expand = GEMM.PackedMatrix(k: c, n: h, b: p.expandWeight, ldb: c, transposeB: true)
    let project = GEMM.PackedMatrix(k: h, n: c, b: p.projectWeight, ldb: h, transposeB: true)
    let perWorker = s.blockRows * (c + h)
    forEachWorker(s.blocks, scratchPerWorker: perWorker) { blocks, scratch in
      let normalized = scratch, activated = scratch + s.blockRows * c
      for index in blocks {
        let range = s.block(index)
        let r0 = range.lowerBound, count = range.count
        NormalizationKernels.layerNormRows(
          x, rows: range, columns: c, weight: p.normWeight, bias: p.normBias, epsilon: epsilon, output: normalized,
          mean: mean, inverseStandardDeviation: rstd, outputRowOffset: r0)
        // h = x̂·W₁ᵀ + b₁, kept for the backward pass.
        GEMM.multiply(
          m: count, a: normalized, lda: c, packedB: expand, c: hidden + r0 * h, ldc: h, columnBias: p.expandBias,
          parallel: false)
        ActivationKernels.gelu(hidden + r0 * h, bias: nil, activated, rows: 1, columns: count * h)
        // o = GELU(h)·W₂ᵀ + b₂, kept for γ's gradient.
        GEMM.multiply(
          m: count, a: activated, lda: h, packedB: project, c: mlpOutput + r0 * c, ldc: c, columnBias: p.projectBias,
          parallel: false)
        ElementwiseKernels.scaledAdd(
          x + r0 * c, mlpOutput + r0 * c, scale: p.scale, rows: count, columns: c, into: y + r0 * c)
      }
    }
  }

  /// Runs `body(items, scratch)` on up to ``Parallel/threadCount`` workers, each with a contiguous range of
  /// `0..<count` and its own `scratchPerWorker` floats. The scratch of all workers is allocated here, before
  /// any of them starts, so the call's peak memory is the same however the threads are scheduled (the
  /// exact memory replays of ``MetaBackend`` probe it once and charge that peak every time).
  static func forEachWorker(
    _ count: Int, scratchPerWorker: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void
  ) {
    let workers = Swift.max(1, Swift.min(Parallel.threadCount, count))
    KernelScratch.with(count: workers * scratchPerWorker) { scratch in
      Parallel.forEach(workers) { worker in
        body((count * worker / workers)..<(count * (worker + 1) / workers), scratch + worker * scratchPerWorker)
      }
    }
  }

  // MARK: Backward

  /// The chunks of blocks whose parameter-gradient partial sums the backward pass keeps apart: as many as the
  /// reductions' scratch bound (``ElementwiseKernels/reductionChunkCount(_:minimumChunk:partialSize:)``) allows,
  /// in an even number (the workers take contiguous runs of them: seven chunks of ten blocks gave two threads
  /// four and six blocks, and quadranet-t's second stage at batch 4 ran 7% slower fused than unfused on two
  /// threads, Zen 3), and at least two wherever each gets two blocks or more: two chunks of a wide MLP's partial
  /// sums (C = 256, H = 1024: 2.1 MB each) exceed that bound, and one chunk is run by one thread. With one block
  /// per chunk, zeroing and adding the partials costs more than fusing saves: quadranet-t's fourth stage at 224²,
  /// batch 16 (784 rows, C = 512, H = 2048: two blocks, 8.4 MB of partial sums each) ran its backward pass in
  /// 99 → 104 ms on one thread and 54 → 57 ms on two, fused in two chunks against unfused (Intel Xeon, a probe
  /// alternating both call by call). Shapes alone set the count, so the sums keep their bits on any thread count.
  static func backwardChunks(blocks: Int, partialCount: Int) -> Int {
    let fitting = ElementwiseKernels.reductionChunkCount(blocks, minimumChunk: 1, partialSize: partialCount)
    let chunks = fitting > 1 ? fitting - fitting % 2 : fitting
    return blocks >= 4 ? Swift.max(2, chunks) : chunks
  }

  static func backward(
    _ x: UnsafePointer<Float>, parameters p: Pointers, shape s: Shape, hidden: UnsafePointer<Float>,
    mlpOutput: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStandardDeviation rstd: UnsafePointer<Float>,
    outputGradient dy: UnsafePointer<Float>, inputGradient dx: UnsafeMutablePointer<Float>, gradients: Pointers
  ) {
    let (c, h) = (s.channels, s.hidden)
    let partialCount = s.partialCount
    let chunks = backwardChunks(blocks: s.blocks, partialCount: partialCount)
    // W₂ and W₁ packed once for the input-side products of all blocks.
    let weights = (
      project: GEMM.PackedMatrix(k: c, n: h, b: p.projectWeight, ldb: h, transposeB: false),
      expand: GEMM.PackedMatrix(k: h, n: c, b: p.expandWeight, ldb: c, transposeB: false)
    )
    KernelScratch.with(count: chunks * partialCount, zeroed: true) { partials in
      // Each worker runs a contiguous run of chunks; a chunk's blocks add into that chunk's sums.
      forEachWorker(chunks, scratchPerWorker: s.blockRows * (3 * c + 2 * h)) { chunkRange, scratch in
        let normalized = scratch
        let outputGradient = normalized + s.blockRows * c  // ∂o = γ ⊙ dy
        let normalizedGradient = outputGradient + s.blockRows * c  // ∂x̂
        let activated = normalizedGradient + s.blockRows * c  // GELU(h)
        let hiddenGradient = activated + s.blockRows * h  // ∂GELU(h), then ∂h in place
        for chunk in chunkRange {
          let sums = Pointers(partials: partials + chunk * partialCount, s)
          for index in (s.blocks * chunk / chunks)..<(s.blocks * (chunk + 1) / chunks) {
            backwardBlock(
              s.block(index), x: x, p: p, shape: s, hidden: hidden, mlpOutput: mlpOutput, mean: mean, rstd: rstd,
              packed: weights, dy: dy, dx: dx, sums: sums, normalized: normalized, outputGradient: outputGradient,
              normalizedGradient: normalizedGradient, activated: activated, hiddenGradient: hiddenGradient)
          }
        }
      }
      // Chunk 0's sums, then the others in chunk order.
      let total = Pointers(partials: partials, s)
      for chunk in 1..<Swift.max(chunks, 1) {
        ElementwiseKernels.accumulate(partials + chunk * partialCount, into: partials, count: partialCount)
      }
      gradients.normWeight.update(from: total.normWeight, count: c)
      gradients.normBias.update(from: total.normBias, count: c)
      gradients.expandWeight.update(from: total.expandWeight, count: h * c)
      gradients.expandBias.update(from: total.expandBias, count: h)
      gradients.projectWeight.update(from: total.projectWeight, count: c * h)
      gradients.projectBias.update(from: total.projectBias, count: c)
      gradients.scale.update(from: total.scale, count: c)
    }
  }

  /// One block of rows of ``backward(_:parameters:shape:hidden:mlpOutput:mean:inverseStandardDeviation:outputGradient:inputGradient:gradients:)``;
  /// the parameter gradients are added to `sums`.
  @inline(__always)
  private static func backwardBlock(
    _ range: Range<Int>, x: UnsafePointer<Float>, p: Pointers, shape s: Shape, hidden: UnsafePointer<Float>,
    mlpOutput: UnsafePointer<Float>, mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
    packed: (project: GEMM.PackedMatrix, expand: GEMM.PackedMatrix), dy: UnsafePointer<Float>,
    dx: UnsafeMutablePointer<Float>, sums: Pointers, normalized: UnsafeMutablePointer<Float>,
    outputGradient: UnsafeMutablePointer<Float>, normalizedGradient: UnsafeMutablePointer<Float>,
    activated: UnsafeMutablePointer<Float>, hiddenGradient: UnsafeMutablePointer<Float>
  ) {
    let (c, h) = (s.channels, s.hidden)
    let r0 = range.lowerBound, count = range.count
    let hiddenBlock = hidden + r0 * h
    // ∂γ += Σ dy ⊙ o;  ∂o = γ ⊙ dy;  ∂b₂ += Σ ∂o.
    for row in 0..<count {
      let dyr = dy + (r0 + row) * c, or = mlpOutput + (r0 + row) * c, dor = outputGradient + row * c
      var j = 0
      while j + 8 <= c {
        let g = ElementwiseKernels.load(dyr + j)
        ElementwiseKernels.store(
          ElementwiseKernels.load(sums.scale + j).addingProduct(g, ElementwiseKernels.load(or + j)), sums.scale + j)
        let d = g * ElementwiseKernels.load(p.scale + j)
        ElementwiseKernels.store(d, dor + j)
        ElementwiseKernels.store(ElementwiseKernels.load(sums.projectBias + j) + d, sums.projectBias + j)
        j += 8
      }
      while j < c {
        sums.scale[j] += dyr[j] * or[j]
        dor[j] = dyr[j] * p.scale[j]
        sums.projectBias[j] += dor[j]
        j += 1
      }
    }
    // ∂GELU(h) = ∂o·W₂   ([rows, H]); then in one pass GELU(h), ∂h = ∂GELU(h) ⊙ GELU′(h) and ∂b₁ += Σ ∂h.
    GEMM.multiply(m: count, a: outputGradient, lda: c, packedB: packed.project, c: hiddenGradient, ldc: h, parallel: false)
    ActivationKernels.geluBackwardWithActivation(
      hiddenBlock, gradient: hiddenGradient, activated: activated, biasSums: sums.expandBias, rows: count, columns: h)
    // ∂W₂ += ∂oᵀ·GELU(h)   ([C, H]).
    GEMM.multiply(
      m: c, n: h, k: count, a: outputGradient, lda: c, transposeA: true, b: activated, ldb: h, transposeB: false,
      c: sums.projectWeight, ldc: h, alpha: 1, beta: 1, columnBias: nil, parallel: false)
    // x̂ again, from the saved statistics.
    for row in 0..<count {
      NormalizationKernels.normalizeRow(
        x + (r0 + row) * c, columns: c, weight: p.normWeight, bias: p.normBias, mean: mean[r0 + row],
        inverseStandardDeviation: rstd[r0 + row], output: normalized + row * c)
    }
    // ∂W₁ += ∂hᵀ·x̂   ([H, C]);   ∂x̂ = ∂h·W₁   ([rows, C]).
    GEMM.multiply(
      m: h, n: c, k: count, a: hiddenGradient, lda: h, transposeA: true, b: normalized, ldb: c, transposeB: false,
      c: sums.expandWeight, ldc: c, alpha: 1, beta: 1, columnBias: nil, parallel: false)
    GEMM.multiply(
      m: count, a: hiddenGradient, lda: h, packedB: packed.expand, c: normalizedGradient, ldc: c, parallel: false)
    // LayerNorm's backward, plus dy through the residual.
    for row in 0..<count {
      NormalizationKernels.layerNormBackwardRow(
        normalizedGradient + row * c, x + (r0 + row) * c, columns: c, weight: p.normWeight, mean: mean[r0 + row],
        inverseStandardDeviation: rstd[r0 + row], inputGradient: dx + (r0 + row) * c,
        weightGradientSum: sums.normWeight, biasGradientSum: sums.normBias, residualGradient: dy + (r0 + row) * c)
    }
  }
}

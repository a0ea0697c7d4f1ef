import CQuadraPrefetch

extension GEMM {
  /// Whether `C = alpha · Aᵀ · B + beta · C` (A stored `k × m`, B stored `k × n`, both row-major) runs
  /// ``multiplyTransposedAInPlace(_:blocking:m:n:k:a:lda:b:ldb:c:ldc:alpha:beta:columnBias:)``: when `C` is
  /// at most ``Blocking/inPlaceTransposedAProduct`` floats, so it stays cached across the depth blocks.
  ///
  /// These are the weight gradients `dW = dYᵀ · X` of the 1 × 1 convolutions (`m`, `n` = channels,
  /// `k` = batch × pixels): deep and narrow, each operand element used for only `m` or `n` multiply-adds.
  static func multipliesTransposedAInPlace(m: Int, n: Int, blocking: Blocking) -> Bool {
    m * n <= blocking.inPlaceTransposedAProduct
  }

  /// Depth rows per block of the in-place `Aᵀ · B` path: a block of both operands (`depth · (m + n)`
  /// floats) fills about a quarter of L2 (`mc · kc / 2` floats is half of it), so every tile after the
  /// first reads it from L2; 8…1024 rows.
  static func transposedADepth(m: Int, n: Int, blocking: Blocking) -> Int {
    Swift.min(1024, Swift.max(8, blocking.mc * blocking.kc / 2 / Swift.max(1, m + n)))
  }

  /// `C = alpha · Aᵀ · B + beta · C + 1 · biasᵀ` with both operands read in place, no packing, on the
  /// calling thread (`A` stored `k × m` with row stride `lda`, `B` stored `k × n` with row stride `ldb`).
  ///
  /// Each micro-kernel tile broadcasts `mr` consecutive floats of a row of `A` (a ``ColumnRowPanel``
  /// with depth stride `lda`) and loads `nr` consecutive floats of the same row of `B`
  /// (a ``RowMajorColumnPanel``). The packing the blocked algorithm would do is a full extra pass over
  /// the deep operands for only `m` (or `n`) multiply-adds per element — as much memory traffic as the
  /// product itself. The depth is cut into blocks of ``transposedADepth(m:n:blocking:)`` rows that stay
  /// in L2 while every tile of `C` passes over them; while a block is multiplied, the next one is
  /// prefetched, one slice of rows before each tile, so the first pass over the operands (which come
  /// from memory: they are the activations and output gradients of a training step) overlaps the
  /// multiply-adds instead of stalling them.
  ///
  /// The kernels read whole tiles: up to `mr − 1` floats past `m` in a row of `A` and a vector's worth
  /// past `n` in a row of `B`. Inside the matrices those land in the next row (lanes and rows that are
  /// never stored); the last depth rows, whose over-read could pass the end of the storage, are copied
  /// into zero-padded rows first.
  static func multiplyTransposedAInPlace<K: GEMMMicroKernel>(
    _ kernel: K.Type, blocking: Blocking, m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, columnBias: UnsafePointer<Float>?
  ) {
    let mr = K.mr, nr = K.nr
    let rowTiles = (m + mr - 1) / mr
    let panels = (n + nr - 1) / nr
    let paddedRows = rowTiles * mr
    let lastPanel = (panels - 1) * nr
    let paddedColumns = lastPanel + K.columnsRead(n - lastPanel)
    // Depth rows p with p · ld + (last index read) past (k − 1) · ld + (last valid index) are copied.
    let overreadA = paddedRows - m, overreadB = paddedColumns - n
    let tailRows = Swift.min(
      k, Swift.max((overreadA + lda - 1) / lda, (overreadB + ldb - 1) / ldb))
    let mainRows = k - tailRows
    let depth = transposedADepth(m: m, n: n, blocking: blocking)
    let tailCount = tailRows * (paddedRows + paddedColumns)
    GEMMScratch.withBuffer(count: mr * nr + tailCount) { scratch in
      let tile = scratch
      var first = true
      /// All tiles of `C` over `rows` depth rows from `a`, `b`; `prefetch` is called before each tile
      /// with the tile's index and the tile count.
      func multiplyBlock(
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, rows: Int,
        prefetch: (_ tile: Int, _ tiles: Int) -> Void
      ) {
        let blockBeta: Float = first ? beta : 1
        let blockBias = first ? columnBias : nil
        first = false
        let tiles = rowTiles * panels
        for rowTile in 0..<rowTiles {
          let i0 = rowTile * mr
          for panel in 0..<panels {
            prefetch(rowTile * panels + panel, tiles)
            let j0 = panel * nr
            let columns = Swift.min(nr, n - j0)
            let aPanel = ColumnRowPanel(pointer: a + i0, depthStride: lda)
            let bPanel = RowMajorColumnPanel(b + j0, ldb: ldb)
            let target = c + i0 * ldc + j0
            let tileBias = blockBias.map { $0 + j0 }
            if columns <= nr / 2 {
              K.computeHalf(
                k: rows, a: aPanel, b: bPanel, c: target, ldc: ldc, alpha: alpha, beta: blockBeta, bias: tileBias,
                rows: Swift.min(mr, m - i0), columns: columns, tile: tile)
            } else {
              K.compute(
                k: rows, a: aPanel, b: bPanel, c: target, ldc: ldc, alpha: alpha, beta: blockBeta, bias: tileBias,
                rows: Swift.min(mr, m - i0), columns: columns, tile: tile)
            }
          }
        }
      }

      // The first block comes from memory with nothing to hide it, so the blocks start small and
      // double: each one's prefetches overlap a block half its size.
      var blockRows = Swift.min(depth, 32)
      var start = 0
      while start < mainRows {
        let rows = Swift.min(blockRows, mainRows - start)
        blockRows = Swift.min(depth, 2 * blockRows)
        let next = start + rows
        let nextRows = Swift.min(blockRows, mainRows - next)
        multiplyBlock(a: a + start * lda, lda: lda, b: b + start * ldb, ldb: ldb, rows: rows) { tile, tiles in
          // Slice `tile` of the next block's rows, so the prefetches spread over the block's tiles.
          let from = next + nextRows * tile / tiles, to = next + nextRows * (tile + 1) / tiles
          for row in from..<to {
            prefetchForReading(a + row * lda, count: m)
            prefetchForReading(b + row * ldb, count: n)
          }
        }
        start = next
      }
      if tailRows > 0 {
        let tailA = scratch + mr * nr
        let tailB = tailA + tailRows * paddedRows
        for row in 0..<tailRows {
          copyPadded(a + (mainRows + row) * lda, count: m, into: tailA + row * paddedRows, width: paddedRows)
          copyPadded(b + (mainRows + row) * ldb, count: n, into: tailB + row * paddedColumns, width: paddedColumns)
        }
        multiplyBlock(
          a: UnsafePointer(tailA), lda: paddedRows, b: UnsafePointer(tailB), ldb: paddedColumns, rows: tailRows
        ) { _, _ in }
      }
    }
  }
}

/// Prefetch hints (into L2) for every cache line of the `count` floats from `start` (`count ≥ 1`; the
/// last float's line too, where `start` is not line-aligned).
@inline(__always)
func prefetchForReading(_ start: UnsafePointer<Float>, count: Int) {
  var offset = 0
  while offset < count {
    quadra_prefetch_read(start + offset)
    offset += 16
  }
  quadra_prefetch_read(start + count - 1)
}

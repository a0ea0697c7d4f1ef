import CQuadraPrefetch
/// Where a micro-kernel reads its `mr` rows of `op(A)`: element `(i, p)` of the tile's rows, step by step in `p`.
protocol GEMMRowPanel {
  /// Row `i`'s value at the current depth `p`.
  func value(_ i: Int) -> Float
  /// Moves to depth `p + 1`.
  mutating func advance()
}

/// A panel packed by ``GEMM``'s `packA`: the `mr` rows side by side, `mr` consecutive floats per depth `p`
/// (`depthStride = mr`).
struct ColumnRowPanel: GEMMRowPanel {
  var pointer: UnsafePointer<Float>
  var depthStride: Int
  @inline(__always) func value(_ i: Int) -> Float { pointer[i] }
  @inline(__always) mutating func advance() { pointer += depthStride }
}

/// `mr` rows of a row-major `A` read in place (row stride `lda`), so a shallow product skips packing `A`:
/// when `n` is small, copying `A` costs as much as the multiply-adds it feeds. The rows must all exist.
struct RowMajorRowPanel: GEMMRowPanel {
  var pointer: UnsafePointer<Float>
  var lda: Int
  @inline(__always) func value(_ i: Int) -> Float { pointer[i &* lda] }
  @inline(__always) mutating func advance() { pointer += 1 }
}

/// Where a micro-kernel reads its `nr` columns of `op(B)`: one row of the panel per depth step.
protocol GEMMColumnPanel {
  /// Vector `index` (of `V.scalarCount` floats) of the current row.
  func vector<V: SIMD>(_ index: Int, as type: V.Type) -> V where V.Scalar == Float
  /// Moves to the next row (depth `p + 1`).
  mutating func advance()
}

/// A panel packed by ``GEMM``'s `packB`: `k` rows of `nr` floats, 64-byte aligned.
struct PackedColumnPanel<K: GEMMMicroKernel>: GEMMColumnPanel {
  var pointer: UnsafeRawPointer
  init(_ pointer: UnsafePointer<Float>) { self.pointer = UnsafeRawPointer(pointer) }
  @inline(__always) func vector<V: SIMD>(_ index: Int, as type: V.Type) -> V where V.Scalar == Float {
    pointer.load(fromByteOffset: index * MemoryLayout<V>.size, as: V.self)
  }
  @inline(__always) mutating func advance() { pointer += K.nr * MemoryLayout<Float>.stride }
}

/// `nr` columns of a row-major `B` read in place (row stride `ldb`; unaligned): a product with few row
/// tiles (the weight gradients' `Xᵀ · dY`, `m` = input channels) uses each B element for only `m`
/// multiply-adds, so packing B — a separate pass over the deep operand — would cost about as much as
/// the product. Every column the kernel reads must exist.
struct RowMajorColumnPanel: GEMMColumnPanel {
  var pointer: UnsafeRawPointer
  var rowBytes: Int
  init(_ pointer: UnsafePointer<Float>, ldb: Int) {
    self.pointer = UnsafeRawPointer(pointer)
    rowBytes = ldb * MemoryLayout<Float>.stride
  }
  @inline(__always) func vector<V: SIMD>(_ index: Int, as type: V.Type) -> V where V.Scalar == Float {
    pointer.loadUnaligned(fromByteOffset: index * MemoryLayout<V>.size, as: V.self)
  }
  @inline(__always) mutating func advance() { pointer += rowBytes }
}

/// The register-tile kernels of ``GEMM``: each computes one `mr × nr` tile of `C` from an `mr`-row
/// panel of packed `op(A)` and an `nr`-column panel of packed `op(B)`, keeping the tile in vector
/// registers for the whole `k` loop.
///
/// Per step of `k` a kernel loads `nr / lanes` vectors of B, broadcasts `mr` values of A and issues
/// `mr · nr / lanes` fused multiply-adds. The shape is set by the register file: accumulators plus
/// the B vectors plus one broadcast must fit, and more accumulators mean fewer loads per FMA.
protocol GEMMMicroKernel {
  /// Rows of the tile (A values broadcast per step).
  static var mr: Int { get }
  /// Columns of the tile (a multiple of the vector width).
  static var nr: Int { get }

  /// `C[rows, columns] = alpha · Apanel · Bpanel + beta · C + bias` for one tile.
  ///
  /// - Parameters:
  ///   - a: the tile's `mr` rows of `op(A)` (packed, or read in place); `b`: its `nr` columns of `op(B)`
  ///     (a packed panel zero-padded past the matrix, or read in place).
  ///   - rows, columns: the valid part of the tile (`≤ mr`, `≤ nr`); only it is read or written in `C`.
  ///   - beta: `0` means `C` is not read.
  ///   - tile: `mr · nr` floats of scratch for edge tiles.
  static func compute<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>)

  /// ``compute(k:a:b:c:ldc:alpha:beta:bias:rows:columns:tile:)`` for a panel whose valid columns fit in
  /// its first vector (`columns ≤ nr / 2`): half the multiply-adds and half the B loads.
  ///
  /// The last panel of a product whose `n` is not a multiple of `nr` is often this narrow (the 28×28
  /// models' widths 40, 80, 160 leave 8 or 16 columns for a 32-wide tile); the full kernel would spend
  /// as much on the zero padding as on the data.
  static func computeHalf<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>)

  /// The floats of each B row the kernel loads for a panel with `columns` valid columns (`columns` …
  /// `nr`): whole vectors, so up to a vector's worth past the valid columns.
  static func columnsRead(_ columns: Int) -> Int
}

extension GEMMMicroKernel {
  static func columnsRead(_ columns: Int) -> Int { columns <= nr / 2 ? nr / 2 : nr }

  /// Writes the valid `rows × columns` part of a tile spilled to `tile` (`mr × nr`, row-major).
  @inline(__always)
  static func storeEdge(
    tile: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
    bias: UnsafePointer<Float>?, rows: Int, columns: Int
  ) {
    for i in 0..<rows {
      storeSpan(c + i * ldc, from: tile + i * nr, count: columns, alpha: alpha, beta: beta, bias: bias)
    }
  }

  /// `destination[j] = alpha · source[j] + bias[j] + beta · destination[j]` for `j < count`, in 16-, 8-
  /// and 4-lane vectors and a scalar tail: an edge tile of a shallow product costs about as much to store
  /// as to compute, so the store must not be a scalar loop.
  @inline(__always)
  static func storeSpan(
    _ destination: UnsafeMutablePointer<Float>, from source: UnsafePointer<Float>, count: Int, alpha: Float,
    beta: Float, bias: UnsafePointer<Float>?
  ) {
    @inline(__always)
    func chunk<V: SIMD>(_ type: V.Type, at j: Int) where V.Scalar == Float {
      let to = UnsafeMutableRawPointer(destination + j)
      var value = UnsafeRawPointer(source + j).loadUnaligned(as: V.self) * alpha
      if let bias { value += UnsafeRawPointer(bias + j).loadUnaligned(as: V.self) }
      if beta != 0 { value += UnsafeRawPointer(to).loadUnaligned(as: V.self) * beta }
      to.storeBytes(of: value, as: V.self)
    }
    var j = 0
    while j + 16 <= count {
      chunk(SIMD16<Float>.self, at: j)
      j += 16
    }
    if j + 8 <= count {
      chunk(SIMD8<Float>.self, at: j)
      j += 8
    }
    if j + 4 <= count {
      chunk(SIMD4<Float>.self, at: j)
      j += 4
    }
    while j < count {
      var value = alpha * source[j] + (bias?[j] ?? 0)
      if beta != 0 { value += beta * destination[j] }
      destination[j] = value
      j += 1
    }
  }

  /// Writes one full row of two vectors: `alpha · (v0, v1) + bias + beta · C`.
  @inline(__always)
  static func storeRow<V: PeakFLOPSVector>(
    _ destination: UnsafeMutablePointer<Float>, _ v0: V, _ v1: V, alpha: Float, beta: Float, bias0: V, bias1: V
  ) {
    let raw = UnsafeMutableRawPointer(destination)
    let width = MemoryLayout<V>.size
    var r0 = V.multiplyAdd(bias0, v0, V(repeating: alpha))
    var r1 = V.multiplyAdd(bias1, v1, V(repeating: alpha))
    if beta != 0 {
      r0 = V.multiplyAdd(r0, V(repeating: beta), raw.loadUnaligned(as: V.self))
      r1 = V.multiplyAdd(r1, V(repeating: beta), raw.loadUnaligned(fromByteOffset: width, as: V.self))
    }
    raw.storeBytes(of: r0, as: V.self)
    raw.storeBytes(of: r1, toByteOffset: width, as: V.self)
  }

  /// Writes a finished tile: full tiles straight from the registers, edge tiles through `tile`.
  ///
  /// - Parameter forEachRow: calls its argument with `(row, leftVector, rightVector)` for the `mr`
  ///   rows of accumulators (a literal list in each kernel, so they stay in registers).
  @inline(__always)
  static func writeTile<V: PeakFLOPSVector>(
    _ forEachRow: ((Int, V, V) -> Void) -> Void, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float,
    beta: Float, bias: UnsafePointer<Float>?, rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    if columns == nr {
      // Full width: store the valid rows straight from the registers (a short last row block too).
      let (bias0, bias1) = biasVectors(bias, as: V.self)
      forEachRow { row, v0, v1 in
        if row < rows { storeRow(c + row * ldc, v0, v1, alpha: alpha, beta: beta, bias0: bias0, bias1: bias1) }
      }
    } else {
      // Edge tile: spill the accumulators and write only the valid part.
      let raw = UnsafeMutableRawPointer(tile)
      let width = MemoryLayout<V>.size
      forEachRow { row, v0, v1 in
        raw.storeBytes(of: v0, toByteOffset: 2 * row * width, as: V.self)
        raw.storeBytes(of: v1, toByteOffset: 2 * row * width + width, as: V.self)
      }
      storeEdge(tile: tile, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns)
    }
  }

  /// ``writeTile(_:c:ldc:alpha:beta:bias:rows:columns:tile:)`` for ``computeHalf(k:a:b:c:ldc:alpha:beta:bias:rows:columns:tile:)``'s
  /// one vector per row (`columns ≤ nr / 2`).
  @inline(__always)
  static func writeHalfTile<V: PeakFLOPSVector>(
    _ forEachRow: ((Int, V) -> Void) -> Void, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float,
    beta: Float, bias: UnsafePointer<Float>?, rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    if columns == V.scalarCount {
      let biasVector = bias.map { UnsafeRawPointer($0).loadUnaligned(as: V.self) } ?? V()
      forEachRow { row, v in
        guard row < rows else { return }
        let destination = UnsafeMutableRawPointer(c + row * ldc)
        var r = V.multiplyAdd(biasVector, v, V(repeating: alpha))
        if beta != 0 { r = V.multiplyAdd(r, V(repeating: beta), destination.loadUnaligned(as: V.self)) }
        destination.storeBytes(of: r, as: V.self)
      }
    } else {
      let raw = UnsafeMutableRawPointer(tile)
      forEachRow { row, v in
        raw.storeBytes(of: v, toByteOffset: row * nr * MemoryLayout<Float>.stride, as: V.self)
      }
      storeEdge(tile: tile, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns)
    }
  }

  /// The bias of a full tile as two vectors (zeros without bias).
  @inline(__always)
  static func biasVectors<V: PeakFLOPSVector>(_ bias: UnsafePointer<Float>?, as: V.Type) -> (V, V) {
    guard let bias else { return (V(), V()) }
    let raw = UnsafeRawPointer(bias)
    return (raw.loadUnaligned(as: V.self), raw.loadUnaligned(fromByteOffset: MemoryLayout<V>.size, as: V.self))
  }
}

/// `acc0 += a · b0`, `acc1 += a · b1`: one row of a two-vector-wide tile.
@inline(__always)
private func update<V: PeakFLOPSVector>(_ acc0: inout V, _ acc1: inout V, _ a: Float, _ b0: V, _ b1: V) {
  let x = V(repeating: a)
  acc0 = V.multiplyAdd(acc0, x, b0)
  acc1 = V.multiplyAdd(acc1, x, b1)
}

/// 6 × 16 with `SIMD8<Float>`, for AVX2's 16 `ymm` registers: 12 accumulators, 2 B vectors and
/// one broadcast (15 registers); 8 loads per 12 FMAs. Also the portable build's kernel.
enum GEMMKernel6x16: GEMMMicroKernel {
  static var mr: Int { 6 }
  static var nr: Int { 16 }

  @inline(__always)
  static func compute<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var ap = a
    var bp = b
    for _ in 0..<k {
      let b0 = bp.vector(0, as: V.self)
      let b1 = bp.vector(1, as: V.self)
      update(&c00, &c01, ap.value(0), b0, b1)
      update(&c10, &c11, ap.value(1), b0, b1)
      update(&c20, &c21, ap.value(2), b0, b1)
      update(&c30, &c31, ap.value(3), b0, b1)
      update(&c40, &c41, ap.value(4), b0, b1)
      update(&c50, &c51, ap.value(5), b0, b1)
      ap.advance()
      bp.advance()
    }
    writeTile(
      { row in
        row(0, c00, c01)
        row(1, c10, c11)
        row(2, c20, c21)
        row(3, c30, c31)
        row(4, c40, c41)
        row(5, c50, c51)
      }, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns, tile: tile)
  }

  @inline(__always)
  static func computeHalf<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V()
    var ap = a
    var bp = b
    for _ in 0..<k {
      let b0 = bp.vector(0, as: V.self)
      c0 = V.multiplyAdd(c0, V(repeating: ap.value(0)), b0)
      c1 = V.multiplyAdd(c1, V(repeating: ap.value(1)), b0)
      c2 = V.multiplyAdd(c2, V(repeating: ap.value(2)), b0)
      c3 = V.multiplyAdd(c3, V(repeating: ap.value(3)), b0)
      c4 = V.multiplyAdd(c4, V(repeating: ap.value(4)), b0)
      c5 = V.multiplyAdd(c5, V(repeating: ap.value(5)), b0)
      ap.advance()
      bp.advance()
    }
    writeHalfTile(
      { row in
        row(0, c0)
        row(1, c1)
        row(2, c2)
        row(3, c3)
        row(4, c4)
        row(5, c5)
      }, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns, tile: tile)
  }
}

/// 14 × 32 with `SIMD16<Float>`, for AVX-512's 32 `zmm` registers: 28 accumulators, 2 B vectors
/// and one broadcast (31 registers); 16 loads per 28 FMAs, about half the 6 × 16 kernel's load
/// traffic per FMA. 14 rows also divide the CNN's row counts exactly (56² = 14 · 224, 14² = 196).
enum GEMMKernel14x32: GEMMMicroKernel {
  static var mr: Int { 14 }
  static var nr: Int { 32 }

  @inline(__always)
  static func compute<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD16<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
    var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
    var c80 = V(), c81 = V(), c90 = V(), c91 = V(), c100 = V(), c101 = V(), c110 = V(), c111 = V()
    var c120 = V(), c121 = V(), c130 = V(), c131 = V()
    var ap = a
    var bp = b
    @inline(__always) func step() {
      let b0 = bp.vector(0, as: V.self)
      let b1 = bp.vector(1, as: V.self)
      update(&c00, &c01, ap.value(0), b0, b1)
      update(&c10, &c11, ap.value(1), b0, b1)
      update(&c20, &c21, ap.value(2), b0, b1)
      update(&c30, &c31, ap.value(3), b0, b1)
      update(&c40, &c41, ap.value(4), b0, b1)
      update(&c50, &c51, ap.value(5), b0, b1)
      update(&c60, &c61, ap.value(6), b0, b1)
      update(&c70, &c71, ap.value(7), b0, b1)
      update(&c80, &c81, ap.value(8), b0, b1)
      update(&c90, &c91, ap.value(9), b0, b1)
      update(&c100, &c101, ap.value(10), b0, b1)
      update(&c110, &c111, ap.value(11), b0, b1)
      update(&c120, &c121, ap.value(12), b0, b1)
      update(&c130, &c131, ap.value(13), b0, b1)
      ap.advance()
      bp.advance()
    }
    // The tile's rows of C (two lines each, a row stride apart: in a product with a power-of-two ldc they
    // share an L1 set) are fetched while the k loop runs, not when the epilogue reads or writes them, one
    // line per depth step: issued all at once before the loop, the 28 misses outnumber the L1's fill
    // buffers and the loop waits for them to drain. Measured on an Intel Xeon (one thread, `bench kernels`,
    // three alternations, fraction of the peak), all at once → spread: 3136 × 256 × 64 0.835 → 0.895–0.90,
    // 12544 × 80 × 40 0.70 → 0.78–0.80, 3136 × 160 × 80 0.855 → 0.905, 1024³ 0.865 → 0.875–0.885. (All at
    // once had gained over none on Zen 4: 1024³ 0.80 → 0.82.)
    let prefetching = Swift.min(k, 2 * rows)
    for p in 0..<prefetching {
      quadra_prefetch_write(c + (p >> 1) * ldc + (p & 1) * 16)
      step()
    }
    for _ in prefetching..<k { step() }
    writeTile(
      { row in
        row(0, c00, c01)
        row(1, c10, c11)
        row(2, c20, c21)
        row(3, c30, c31)
        row(4, c40, c41)
        row(5, c50, c51)
        row(6, c60, c61)
        row(7, c70, c71)
        row(8, c80, c81)
        row(9, c90, c91)
        row(10, c100, c101)
        row(11, c110, c111)
        row(12, c120, c121)
        row(13, c130, c131)
      }, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns, tile: tile)
  }

  /// Panels of at most 8 columns (n = 40 leaves 8 for a 32-wide tile) use 8-lane vectors: on Zen 4,
  /// which splits a 512-bit FMA into two 256-bit halves, that halves the panel's multiply-adds.
  static func columnsRead(_ columns: Int) -> Int { columns <= 8 ? 8 : columns <= 16 ? 16 : 32 }

  /// ``GEMMMicroKernel/computeHalf(k:a:b:c:ldc:alpha:beta:bias:rows:columns:tile:)``: one 16-lane
  /// vector per row, or one 8-lane vector when `columns ≤ 8`.
  @inline(__always)
  static func computeHalf<A: GEMMRowPanel, B: GEMMColumnPanel>(
    k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    if columns <= 8 {
      computeOneVector(
        SIMD8<Float>.self, k: k, a: a, b: b, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows,
        columns: columns, tile: tile)
    } else {
      computeOneVector(
        SIMD16<Float>.self, k: k, a: a, b: b, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows,
        columns: columns, tile: tile)
    }
  }

  /// 14 rows × one vector of `V` per row.
  @inline(__always)
  static func computeOneVector<V: PeakFLOPSVector, A: GEMMRowPanel, B: GEMMColumnPanel>(
    _ vector: V.Type, k: Int, a: A, b: B,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    var c0 = V(), c1 = V(), c2 = V(), c3 = V(), c4 = V(), c5 = V(), c6 = V()
    var c7 = V(), c8 = V(), c9 = V(), c10 = V(), c11 = V(), c12 = V(), c13 = V()
    var ap = a
    var bp = b
    for _ in 0..<k {
      let b0 = bp.vector(0, as: V.self)
      c0 = V.multiplyAdd(c0, V(repeating: ap.value(0)), b0)
      c1 = V.multiplyAdd(c1, V(repeating: ap.value(1)), b0)
      c2 = V.multiplyAdd(c2, V(repeating: ap.value(2)), b0)
      c3 = V.multiplyAdd(c3, V(repeating: ap.value(3)), b0)
      c4 = V.multiplyAdd(c4, V(repeating: ap.value(4)), b0)
      c5 = V.multiplyAdd(c5, V(repeating: ap.value(5)), b0)
      c6 = V.multiplyAdd(c6, V(repeating: ap.value(6)), b0)
      c7 = V.multiplyAdd(c7, V(repeating: ap.value(7)), b0)
      c8 = V.multiplyAdd(c8, V(repeating: ap.value(8)), b0)
      c9 = V.multiplyAdd(c9, V(repeating: ap.value(9)), b0)
      c10 = V.multiplyAdd(c10, V(repeating: ap.value(10)), b0)
      c11 = V.multiplyAdd(c11, V(repeating: ap.value(11)), b0)
      c12 = V.multiplyAdd(c12, V(repeating: ap.value(12)), b0)
      c13 = V.multiplyAdd(c13, V(repeating: ap.value(13)), b0)
      ap.advance()
      bp.advance()
    }
    writeHalfTile(
      { row in
        row(0, c0)
        row(1, c1)
        row(2, c2)
        row(3, c3)
        row(4, c4)
        row(5, c5)
        row(6, c6)
        row(7, c7)
        row(8, c8)
        row(9, c9)
        row(10, c10)
        row(11, c11)
        row(12, c12)
        row(13, c13)
      }, c: c, ldc: ldc, alpha: alpha, beta: beta, bias: bias, rows: rows, columns: columns, tile: tile)
  }
}

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
  ///   - a: `k` columns of `mr` consecutive floats; `b`: `k` rows of `nr` consecutive floats (64-byte
  ///     aligned panels, zero-padded past the matrix).
  ///   - rows, columns: the valid part of the tile (`≤ mr`, `≤ nr`); only it is read or written in `C`.
  ///   - beta: `0` means `C` is not read.
  ///   - tile: `mr · nr` floats of scratch for edge tiles.
  static func compute(
    k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>)
}

extension GEMMMicroKernel {
  /// Writes the valid `rows × columns` part of a tile spilled to `tile` (`mr × nr`, row-major).
  @inline(__always)
  static func storeEdge(
    tile: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float,
    bias: UnsafePointer<Float>?, rows: Int, columns: Int
  ) {
    for i in 0..<rows {
      let destination = c + i * ldc
      let source = tile + i * nr
      for j in 0..<columns {
        var value = alpha * source[j] + (bias?[j] ?? 0)
        if beta != 0 { value += beta * destination[j] }
        destination[j] = value
      }
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
    if rows == mr && columns == nr {
      let (bias0, bias1) = biasVectors(bias, as: V.self)
      forEachRow { row, v0, v1 in
        storeRow(c + row * ldc, v0, v1, alpha: alpha, beta: beta, bias0: bias0, bias1: bias1)
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
  static func compute(
    k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var ap = a
    var bp = UnsafeRawPointer(b)
    for _ in 0..<k {
      let b0 = bp.load(as: V.self)
      let b1 = bp.load(fromByteOffset: 32, as: V.self)
      update(&c00, &c01, ap[0], b0, b1)
      update(&c10, &c11, ap[1], b0, b1)
      update(&c20, &c21, ap[2], b0, b1)
      update(&c30, &c31, ap[3], b0, b1)
      update(&c40, &c41, ap[4], b0, b1)
      update(&c50, &c51, ap[5], b0, b1)
      ap += 6
      bp += 16 * MemoryLayout<Float>.stride
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
}

/// 14 × 32 with `SIMD16<Float>`, for AVX-512's 32 `zmm` registers: 28 accumulators, 2 B vectors
/// and one broadcast (31 registers); 16 loads per 28 FMAs, about half the 6 × 16 kernel's load
/// traffic per FMA. 14 rows also divide the CNN's row counts exactly (56² = 14 · 224, 14² = 196).
enum GEMMKernel14x32: GEMMMicroKernel {
  static var mr: Int { 14 }
  static var nr: Int { 32 }

  @inline(__always)
  static func compute(
    k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
    c: UnsafeMutablePointer<Float>, ldc: Int, alpha: Float, beta: Float, bias: UnsafePointer<Float>?,
    rows: Int, columns: Int, tile: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD16<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V(), c30 = V(), c31 = V()
    var c40 = V(), c41 = V(), c50 = V(), c51 = V(), c60 = V(), c61 = V(), c70 = V(), c71 = V()
    var c80 = V(), c81 = V(), c90 = V(), c91 = V(), c100 = V(), c101 = V(), c110 = V(), c111 = V()
    var c120 = V(), c121 = V(), c130 = V(), c131 = V()
    var ap = a
    var bp = UnsafeRawPointer(b)
    for _ in 0..<k {
      let b0 = bp.load(as: V.self)
      let b1 = bp.load(fromByteOffset: 64, as: V.self)
      update(&c00, &c01, ap[0], b0, b1)
      update(&c10, &c11, ap[1], b0, b1)
      update(&c20, &c21, ap[2], b0, b1)
      update(&c30, &c31, ap[3], b0, b1)
      update(&c40, &c41, ap[4], b0, b1)
      update(&c50, &c51, ap[5], b0, b1)
      update(&c60, &c61, ap[6], b0, b1)
      update(&c70, &c71, ap[7], b0, b1)
      update(&c80, &c81, ap[8], b0, b1)
      update(&c90, &c91, ap[9], b0, b1)
      update(&c100, &c101, ap[10], b0, b1)
      update(&c110, &c111, ap[11], b0, b1)
      update(&c120, &c121, ap[12], b0, b1)
      update(&c130, &c131, ap[13], b0, b1)
      ap += 14
      bp += 32 * MemoryLayout<Float>.stride
    }
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
}

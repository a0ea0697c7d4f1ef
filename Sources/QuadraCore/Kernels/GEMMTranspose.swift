import Foundation

/// In-register transposes for packing a row-major `A` into ``GEMM``'s column panels.
enum GEMMTranspose {
  /// Writes `rows` (≤ 8) rows of `k` floats (row stride `lda`) as `k` consecutive columns of `rows` floats each
  /// (the packed A panel of ``GEMM``), 8 columns at a time: each row's 8 floats are one vector load, an 8 × 8
  /// transpose (rows past `rows` are zeros) turns them into columns, and column `j` is stored as a whole
  /// vector whose lanes past `rows` the next column's store overwrites (the last column of each group is
  /// stored lane by lane, so nothing is written past the panel). A whole-vector store reaches only into the
  /// next column while `rows` is at least half the vector, as the micro-kernels' `mr` (6, 14) are.
  @inline(__always)
  static func columns8(
    of source: UnsafePointer<Float>, lda: Int, rows: Int, k: Int, into panel: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD8<Float>
    assert(rows >= 4 && rows <= 8, "columns8: rows \(rows) outside 4...8")
    let raw = UnsafeMutableRawPointer(panel)
    let stride = MemoryLayout<Float>.stride
    var p = 0
    while p + 8 <= k {
      @inline(__always) func row(_ i: Int) -> V {
        i < rows ? UnsafeRawPointer(source + i * lda + p).loadUnaligned(as: V.self) : V()
      }
      var v0 = row(0)
      var v1 = row(1)
      var v2 = row(2)
      var v3 = row(3)
      var v4 = row(4)
      var v5 = row(5)
      var v6 = row(6)
      var v7 = row(7)
      // 3 perfect unshuffles: each rotates the bits of (row, lane) by one, so 3 swap them.
      for _ in 0..<3 {
        let p0 = SIMD16(lowHalf: v0, highHalf: v1)
        let p1 = SIMD16(lowHalf: v2, highHalf: v3)
        let p2 = SIMD16(lowHalf: v4, highHalf: v5)
        let p3 = SIMD16(lowHalf: v6, highHalf: v7)
        v0 = p0.evenHalf
        v1 = p1.evenHalf
        v2 = p2.evenHalf
        v3 = p3.evenHalf
        v4 = p0.oddHalf
        v5 = p1.oddHalf
        v6 = p2.oddHalf
        v7 = p3.oddHalf
      }
      raw.storeBytes(of: v0, toByteOffset: (p + 0) * rows * stride, as: V.self)
      raw.storeBytes(of: v1, toByteOffset: (p + 1) * rows * stride, as: V.self)
      raw.storeBytes(of: v2, toByteOffset: (p + 2) * rows * stride, as: V.self)
      raw.storeBytes(of: v3, toByteOffset: (p + 3) * rows * stride, as: V.self)
      raw.storeBytes(of: v4, toByteOffset: (p + 4) * rows * stride, as: V.self)
      raw.storeBytes(of: v5, toByteOffset: (p + 5) * rows * stride, as: V.self)
      raw.storeBytes(of: v6, toByteOffset: (p + 6) * rows * stride, as: V.self)
      for i in 0..<rows { panel[(p + 7) * rows + i] = v7[i] }
      p += 8
    }
    while p < k {
      for i in 0..<rows { panel[p * rows + i] = source[i * lda + p] }
      p += 1
    }
  }

  /// ``columns8(of:lda:rows:k:into:)`` for up to 16 rows, 16 columns at a time.
  @inline(__always)
  static func columns16(
    of source: UnsafePointer<Float>, lda: Int, rows: Int, k: Int, into panel: UnsafeMutablePointer<Float>
  ) {
    typealias V = SIMD16<Float>
    assert(rows >= 8 && rows <= 16, "columns16: rows \(rows) outside 8...16")
    let raw = UnsafeMutableRawPointer(panel)
    let stride = MemoryLayout<Float>.stride
    var p = 0
    while p + 16 <= k {
      @inline(__always) func row(_ i: Int) -> V {
        i < rows ? UnsafeRawPointer(source + i * lda + p).loadUnaligned(as: V.self) : V()
      }
      var v0 = row(0)
      var v1 = row(1)
      var v2 = row(2)
      var v3 = row(3)
      var v4 = row(4)
      var v5 = row(5)
      var v6 = row(6)
      var v7 = row(7)
      var v8 = row(8)
      var v9 = row(9)
      var v10 = row(10)
      var v11 = row(11)
      var v12 = row(12)
      var v13 = row(13)
      var v14 = row(14)
      var v15 = row(15)
      // 4 perfect unshuffles: each rotates the bits of (row, lane) by one, so 4 swap them.
      for _ in 0..<4 {
        let p0 = SIMD32(lowHalf: v0, highHalf: v1)
        let p1 = SIMD32(lowHalf: v2, highHalf: v3)
        let p2 = SIMD32(lowHalf: v4, highHalf: v5)
        let p3 = SIMD32(lowHalf: v6, highHalf: v7)
        let p4 = SIMD32(lowHalf: v8, highHalf: v9)
        let p5 = SIMD32(lowHalf: v10, highHalf: v11)
        let p6 = SIMD32(lowHalf: v12, highHalf: v13)
        let p7 = SIMD32(lowHalf: v14, highHalf: v15)
        v0 = p0.evenHalf
        v1 = p1.evenHalf
        v2 = p2.evenHalf
        v3 = p3.evenHalf
        v4 = p4.evenHalf
        v5 = p5.evenHalf
        v6 = p6.evenHalf
        v7 = p7.evenHalf
        v8 = p0.oddHalf
        v9 = p1.oddHalf
        v10 = p2.oddHalf
        v11 = p3.oddHalf
        v12 = p4.oddHalf
        v13 = p5.oddHalf
        v14 = p6.oddHalf
        v15 = p7.oddHalf
      }
      raw.storeBytes(of: v0, toByteOffset: (p + 0) * rows * stride, as: V.self)
      raw.storeBytes(of: v1, toByteOffset: (p + 1) * rows * stride, as: V.self)
      raw.storeBytes(of: v2, toByteOffset: (p + 2) * rows * stride, as: V.self)
      raw.storeBytes(of: v3, toByteOffset: (p + 3) * rows * stride, as: V.self)
      raw.storeBytes(of: v4, toByteOffset: (p + 4) * rows * stride, as: V.self)
      raw.storeBytes(of: v5, toByteOffset: (p + 5) * rows * stride, as: V.self)
      raw.storeBytes(of: v6, toByteOffset: (p + 6) * rows * stride, as: V.self)
      raw.storeBytes(of: v7, toByteOffset: (p + 7) * rows * stride, as: V.self)
      raw.storeBytes(of: v8, toByteOffset: (p + 8) * rows * stride, as: V.self)
      raw.storeBytes(of: v9, toByteOffset: (p + 9) * rows * stride, as: V.self)
      raw.storeBytes(of: v10, toByteOffset: (p + 10) * rows * stride, as: V.self)
      raw.storeBytes(of: v11, toByteOffset: (p + 11) * rows * stride, as: V.self)
      raw.storeBytes(of: v12, toByteOffset: (p + 12) * rows * stride, as: V.self)
      raw.storeBytes(of: v13, toByteOffset: (p + 13) * rows * stride, as: V.self)
      raw.storeBytes(of: v14, toByteOffset: (p + 14) * rows * stride, as: V.self)
      for i in 0..<rows { panel[(p + 15) * rows + i] = v15[i] }
      p += 16
    }
    while p < k {
      for i in 0..<rows { panel[p * rows + i] = source[i * lda + p] }
      p += 1
    }
  }
}

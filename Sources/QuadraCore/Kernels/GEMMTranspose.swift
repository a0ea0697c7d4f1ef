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
        let (e0, o0) = (evenLanes(v0, v1), oddLanes(v0, v1))
        let (e1, o1) = (evenLanes(v2, v3), oddLanes(v2, v3))
        let (e2, o2) = (evenLanes(v4, v5), oddLanes(v4, v5))
        let (e3, o3) = (evenLanes(v6, v7), oddLanes(v6, v7))
        (v0, v1, v2, v3, v4, v5, v6, v7) = (e0, e1, e2, e3, o0, o1, o2, o3)
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

  /// ``columns8(of:lda:rows:k:into:)`` for up to 16 rows, 16 columns at a time. With a `columnStride` (≥ 16: packing
  /// 16 rows of a stored `Bᵀ` into half of a 32-wide B panel) column `p` starts `p · columnStride` floats into the panel
  /// instead of `p · rows`, and every column is stored as a whole vector.
  @inline(__always)
  static func columns16(
    of source: UnsafePointer<Float>, lda: Int, rows: Int, k: Int, into panel: UnsafeMutablePointer<Float>,
    columnStride: Int? = nil
  ) {
    typealias V = SIMD16<Float>
    assert(rows >= 8 && rows <= 16, "columns16: rows \(rows) outside 8...16")
    assert(columnStride.map { $0 >= 16 } ?? true, "columns16: column stride below 16")
    let width = columnStride ?? rows
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
        let (e0, o0) = (evenLanes(v0, v1), oddLanes(v0, v1))
        let (e1, o1) = (evenLanes(v2, v3), oddLanes(v2, v3))
        let (e2, o2) = (evenLanes(v4, v5), oddLanes(v4, v5))
        let (e3, o3) = (evenLanes(v6, v7), oddLanes(v6, v7))
        let (e4, o4) = (evenLanes(v8, v9), oddLanes(v8, v9))
        let (e5, o5) = (evenLanes(v10, v11), oddLanes(v10, v11))
        let (e6, o6) = (evenLanes(v12, v13), oddLanes(v12, v13))
        let (e7, o7) = (evenLanes(v14, v15), oddLanes(v14, v15))
        (v0, v1, v2, v3, v4, v5, v6, v7) = (e0, e1, e2, e3, e4, e5, e6, e7)
        (v8, v9, v10, v11, v12, v13, v14, v15) = (o0, o1, o2, o3, o4, o5, o6, o7)
      }
      raw.storeBytes(of: v0, toByteOffset: (p + 0) * width * stride, as: V.self)
      raw.storeBytes(of: v1, toByteOffset: (p + 1) * width * stride, as: V.self)
      raw.storeBytes(of: v2, toByteOffset: (p + 2) * width * stride, as: V.self)
      raw.storeBytes(of: v3, toByteOffset: (p + 3) * width * stride, as: V.self)
      raw.storeBytes(of: v4, toByteOffset: (p + 4) * width * stride, as: V.self)
      raw.storeBytes(of: v5, toByteOffset: (p + 5) * width * stride, as: V.self)
      raw.storeBytes(of: v6, toByteOffset: (p + 6) * width * stride, as: V.self)
      raw.storeBytes(of: v7, toByteOffset: (p + 7) * width * stride, as: V.self)
      raw.storeBytes(of: v8, toByteOffset: (p + 8) * width * stride, as: V.self)
      raw.storeBytes(of: v9, toByteOffset: (p + 9) * width * stride, as: V.self)
      raw.storeBytes(of: v10, toByteOffset: (p + 10) * width * stride, as: V.self)
      raw.storeBytes(of: v11, toByteOffset: (p + 11) * width * stride, as: V.self)
      raw.storeBytes(of: v12, toByteOffset: (p + 12) * width * stride, as: V.self)
      raw.storeBytes(of: v13, toByteOffset: (p + 13) * width * stride, as: V.self)
      raw.storeBytes(of: v14, toByteOffset: (p + 14) * width * stride, as: V.self)
      if columnStride != nil {
        raw.storeBytes(of: v15, toByteOffset: (p + 15) * width * stride, as: V.self)
      } else {
        for i in 0..<rows { panel[(p + 15) * rows + i] = v15[i] }
      }
      p += 16
    }
    while p < k {
      for i in 0..<rows { panel[p * width + i] = source[i * lda + p] }
      p += 1
    }
  }

  // The lanes spelled out one by one: LLVM folds them into one two-source shuffle (`vpermt2ps`) whatever it
  // decides to inline. With the standard library's `SIMD32.evenHalf` / `oddHalf` that depended on inlining:
  // product builds got the shuffles, but builds with `-enable-testing` (the tests, probes) kept `oddHalf` a
  // call that moves every lane through the stack, and 1024³ ran at 0.81 instead of 0.87 of the peak there.

  /// The even lanes of `a` followed by those of `b`.
  @inline(__always)
  static func evenLanes(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    SIMD16(a[0], a[2], a[4], a[6], a[8], a[10], a[12], a[14], b[0], b[2], b[4], b[6], b[8], b[10], b[12], b[14])
  }

  /// The odd lanes of `a` followed by those of `b`.
  @inline(__always)
  static func oddLanes(_ a: SIMD16<Float>, _ b: SIMD16<Float>) -> SIMD16<Float> {
    SIMD16(a[1], a[3], a[5], a[7], a[9], a[11], a[13], a[15], b[1], b[3], b[5], b[7], b[9], b[11], b[13], b[15])
  }

  /// The even lanes of `a` followed by those of `b`.
  @inline(__always)
  static func evenLanes(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8(a[0], a[2], a[4], a[6], b[0], b[2], b[4], b[6])
  }

  /// The odd lanes of `a` followed by those of `b`.
  @inline(__always)
  static func oddLanes(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8(a[1], a[3], a[5], a[7], b[1], b[3], b[5], b[7])
  }
}

extension GEMM {
  /// `op(B)` (k × n) packed once into the micro-kernel's panel layout, for weights reused across calls.
  ///
  /// ``GEMM/multiply(m:a:lda:transposeA:packedB:c:ldc:beta:columnBias:parallel:)`` then skips the
  /// packing of B that every plain multiply repeats (per call, and per thread when the rows are split).
  /// The layout follows the micro-kernel shape chosen when the matrix is packed: `op(B)` is cut into
  /// blocks of `kc` rows; block `pc` holds `⌈n / nr⌉` panels of `kc × nr` floats (zero past `n`), so a
  /// multiply reads panel after panel contiguously. Memory: `k · ⌈n / nr⌉ · nr` floats (not counted by
  /// ``MemoryAllocator``; this object owns them and frees them when released).
  ///
  /// Immutable after `init`, so one instance may serve concurrent multiplies.
  public final class PackedMatrix: @unchecked Sendable {
    /// Rows of `op(B)` (the shared dimension of the product).
    public let k: Int
    /// Columns of `op(B)` (and of the product).
    public let n: Int
    /// The micro-kernel the panels are laid out for.
    let shape: MicroKernelShape
    /// Rows per packed block (the multiply's `kc`).
    let kc: Int
    /// `n` rounded up to a multiple of the panel width.
    let paddedColumns: Int
    private let storage: UnsafeMutablePointer<Float>

    /// Packs `op(B)`: `B` as stored is `k × n` with row stride `ldb`, or `n × k` when `transposeB`.
    ///
    /// - Precondition: `k ≥ 0`, `n ≥ 0`, `ldb ≥ max(1, transposeB ? k : n)`, and the packed size
    ///   fits in memory addresses; anything else stops with a message naming the argument.
    public init(k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, transposeB: Bool) {
      opPrecondition(k >= 0 && n >= 0, "GEMM.PackedMatrix: negative size k=\(k) n=\(n)")
      opPrecondition(
        ldb >= Swift.max(1, transposeB ? k : n),
        "GEMM.PackedMatrix: ldb=\(ldb) too small for \(transposeB ? "Bᵀ" : "B") with k=\(k) n=\(n)")
      let shape = GEMM.currentShape
      let nr = shape.nr
      let paddedColumns = (n + nr - 1) / nr * nr
      let (count, overflow) = Swift.max(k, 1).multipliedReportingOverflow(by: Swift.max(paddedColumns, nr))
      opPrecondition(
        !overflow && count <= Int.max / MemoryLayout<Float>.stride,
        "GEMM.PackedMatrix: k=\(k) × n=\(n) is too large to pack")
      self.k = k
      self.n = n
      self.shape = shape
      self.kc = GEMM.blocking(for: shape).depth(k)
      self.paddedColumns = paddedColumns
      // 64-byte aligned: the micro-kernels read the panels with aligned vector loads.
      storage = UnsafeMutableRawPointer.allocate(byteCount: count * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: count)
      var pc = 0
      while pc < k {
        let kcCurrent = Swift.min(kc, k - pc)
        let block = transposeB ? b + pc : b + pc * ldb
        switch shape {
        case .rows6Columns16:
          GEMM.packB(GEMMKernel6x16.self, k: kcCurrent, n: n, b: block, ldb: ldb, transposeB: transposeB, into: storage + pc * paddedColumns)
        case .rows14Columns32:
          GEMM.packB(GEMMKernel14x32.self, k: kcCurrent, n: n, b: block, ldb: ldb, transposeB: transposeB, into: storage + pc * paddedColumns)
        }
        pc += kc
      }
    }

    deinit { storage.deallocate() }

    /// The packed panels as an operand of the blocked algorithm.
    var operand: OperandB { .packed(UnsafePointer(storage), paddedColumns: paddedColumns, kc: kc, columnOffset: 0) }
  }

  /// `C = op(A) · B + beta · C + 1 · columnBiasᵀ` with `B` prepacked.
  ///
  /// The same product as ``multiply(m:n:k:a:lda:transposeA:b:ldb:transposeB:c:ldc:alpha:beta:)`` with
  /// `alpha = 1`, `n = packedB.n` and `k = packedB.k`, using the micro-kernel `packedB` was packed for
  /// (whatever the current default), on up to ``Parallel/threadCount`` threads unless `parallel` is false.
  ///
  /// - Parameters:
  ///   - m: rows of `op(A)` and `C`.
  ///   - a: `A` as stored: `m × k` with row stride `lda`, or `k × m` when `transposeA`.
  ///   - packedB: `op(B)`, `k × n`.
  ///   - c: `m × n` with row stride `ldc ≥ n`; not read when `beta == 0`. Must not overlap `a`.
  ///   - columnBias: `n` floats added to every row of `C` (nil: none).
  ///   - parallel: false keeps the product on the calling thread (for callers already running in parallel).
  public static func multiply(
    m: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
    packedB: PackedMatrix, c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0,
    columnBias: UnsafePointer<Float>? = nil, parallel: Bool = true
  ) {
    let n = packedB.n, k = packedB.k
    opPrecondition(m >= 0, "GEMM: negative size m=\(m)")
    checkStrideA(m: m, k: k, lda: lda, transposeA: transposeA)
    opPrecondition(ldc >= Swift.max(1, n), "GEMM: ldc=\(ldc) smaller than n=\(n)")
    guard m > 0, n > 0 else { return }
    if k == 0 {
      scaleOnly(m: m, n: n, c: c, ldc: ldc, beta: beta, columnBias: columnBias)
      return
    }
    let blocking = GEMM.blocking(for: packedB.shape)
    withExtendedLifetime(packedB) {
      switch packedB.shape {
      case .rows6Columns16:
        run(
          GEMMKernel6x16.self, blocking: blocking, m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA,
          b: packedB.operand, c: c, ldc: ldc, alpha: 1, beta: beta, columnBias: columnBias, parallel: parallel)
      case .rows14Columns32:
        run(
          GEMMKernel14x32.self, blocking: blocking, m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA,
          b: packedB.operand, c: c, ldc: ldc, alpha: 1, beta: beta, columnBias: columnBias, parallel: parallel)
      }
    }
  }
}

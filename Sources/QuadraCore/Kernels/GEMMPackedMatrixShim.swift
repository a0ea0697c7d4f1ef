// TEMPORARY (branch `inference`): the "perf" engineer adds the real `GEMM.PackedMatrix` (B packed once
// into the micro-kernel's panels) on their branch with exactly this API; the lead deletes this file at
// merge. Until then the "packed" matrix is a contiguous row-major copy of op(B), multiplied by the plain
// GEMM, so QuadraInference builds and its results are the real API's up to rounding.

extension GEMM {
  /// `op(B)` (`k × n`) prepared once for many products with different `A`.
  public final class PackedMatrix: @unchecked Sendable {
    public let k: Int
    public let n: Int
    /// op(B) as a row-major `k × n` copy.
    let storage: TensorBuffer

    /// Copies `op(B)`: `B` as stored is `k × n` with row stride `ldb`, or `n × k` when `transposeB`.
    public init(k: Int, n: Int, b: UnsafePointer<Float>, ldb: Int, transposeB: Bool) {
      opPrecondition(k >= 0 && n >= 0, "GEMM.PackedMatrix: negative size k=\(k) n=\(n)")
      opPrecondition(ldb >= Swift.max(1, transposeB ? k : n), "GEMM.PackedMatrix: ldb=\(ldb) too small")
      self.k = k
      self.n = n
      storage = TensorBuffer(count: k * n)
      for row in 0..<k {
        for column in 0..<n {
          storage.pointer[row * n + column] = transposeB ? b[column * ldb + row] : b[row * ldb + column]
        }
      }
    }
  }

  /// `C = op(A) · B + beta · C + 1 · columnBiasᵀ` with a prepacked `B`; `op(A)` is `m × packedB.k`.
  /// `parallel: false` keeps it on the calling thread (for callers that already run in parallel).
  public static func multiply(
    m: Int, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
    packedB: PackedMatrix, c: UnsafeMutablePointer<Float>, ldc: Int, beta: Float = 0,
    columnBias: UnsafePointer<Float>? = nil, parallel: Bool = true
  ) {
    multiply(
      m: m, n: packedB.n, k: packedB.k, a: a, lda: lda, transposeA: transposeA,
      b: packedB.storage.pointer, ldb: Swift.max(1, packedB.n), transposeB: false,
      c: c, ldc: ldc, alpha: 1, beta: beta, columnBias: columnBias, parallel: parallel)
  }
}

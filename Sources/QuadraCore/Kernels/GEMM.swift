/// General matrix multiply on row-major matrices:
/// `C = alpha · op(A) · op(B) + beta · C`, with `op(X) = X` or `Xᵀ`.
///
/// `op(A)` is `m × k`, `op(B)` is `k × n`, `C` is `m × n`. `lda`, `ldb`, `ldc` are
/// the row strides of the matrices as stored (before transposition).
/// When `beta == 0`, `C` is not read (it may be uninitialized).
public enum GEMM {
  public static func multiply(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transposeA: Bool,
    b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float = 1, beta: Float = 0
  ) {
    // Placeholder reference implementation; replaced by the packed SIMD kernel.
    for i in 0..<m {
      for j in 0..<n {
        var sum: Float = 0
        for p in 0..<k {
          let av = transposeA ? a[p * lda + i] : a[i * lda + p]
          let bv = transposeB ? b[j * ldb + p] : b[p * ldb + j]
          sum += av * bv
        }
        c[i * ldc + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j])
      }
    }
  }
}

import Foundation
import Synchronization
import QuadraModels

/// MeCo, "Zero-Shot NAS via the Minimum Eigenvalue of Correlation on Feature Maps" (Jiang et al.,
/// NeurIPS 2023): how far from redundant the channels of an untrained network's feature maps are.
///
/// For a feature map `f` of one image (`H·W` positions × `C` channels), `P(f)` is the `C × C` Pearson
/// correlation matrix of its channels over the positions (a channel that is constant over the image
/// correlates with nothing: its row and column are 0). With `fᵢ(x)` the output of the `i`-th residual
/// join (every `x + γ ⊙ branch` of every block; a QuadraNet, HorNet or ConvNeXt block has one or two)
/// and `X` the proxy's mini-batch,
///
///     score = Σᵢ mean_{x ∈ X} λ_min(P(fᵢ(x)))
///
/// The paper scores one image; the mean over the batch makes the score less dependent on which image.
/// Where a map has no more positions than channels (`H·W ≤ C`, the late stages at 28²), its centred
/// channel vectors span at most `H·W − 1` dimensions, so `P` is singular and λ_min is exactly 0: it
/// adds nothing and is not computed. Weights from seed 0; deterministic.
public enum MeCo {
  /// The score of `config` (untrained, weights from seed 0) on `images` `[N, H, W, C]`, N ≥ 1.
  ///
  /// - Throws: ``SearchSpaceError`` when the batch is empty or does not fit the model.
  public static func score(_ config: ModelConfig, images: Tensor) throws -> Double {
    let recorder = FeatureMapRecorder(batch: images.shape[0])
    try recorder.recordForward(of: config, on: images, proxy: "MeCo", minimumImages: 1)
    return recorder.total
  }

  /// The smallest eigenvalue of the channel correlation matrix of one feature map: `positions` rows of
  /// `channels` floats (NHWC, one image). 0 when `positions ≤ channels` (the matrix is singular).
  public static func minimumCorrelationEigenvalue(
    _ map: UnsafeBufferPointer<Float>, positions: Int, channels: Int
  ) -> Double {
    precondition(map.count == positions * channels, "MeCo: map of \(map.count) floats is not \(positions) × \(channels)")
    guard positions > channels, channels >= 1 else { return 0 }
    let c = channels
    var mean = [Double](repeating: 0, count: c)
    for p in 0..<positions {
      for j in 0..<c { mean[j] += Double(map[p * c + j]) }
    }
    for j in 0..<c { mean[j] /= Double(positions) }
    // Covariance (upper triangle, then mirrored), in Double: channels of an untrained net can be nearly
    // collinear, and it is exactly that smallest eigenvalue that is wanted.
    var matrix = [Double](repeating: 0, count: c * c)
    var centred = [Double](repeating: 0, count: c)
    for p in 0..<positions {
      for j in 0..<c { centred[j] = Double(map[p * c + j]) - mean[j] }
      for i in 0..<c {
        let a = centred[i]
        if a == 0 { continue }
        for j in i..<c { matrix[i * c + j] += a * centred[j] }
      }
    }
    var scale = [Double](repeating: 0, count: c)
    for i in 0..<c {
      let variance = matrix[i * c + i]
      // A channel constant over the image (up to rounding) has no correlation: its row stays 0.
      scale[i] = variance > 1e-20 ? 1 / variance.squareRoot() : 0
    }
    for i in 0..<c {
      for j in i..<c {
        let r = matrix[i * c + j] * scale[i] * scale[j]
        matrix[i * c + j] = r
        matrix[j * c + i] = r
      }
    }
    return smallestEigenvalue(symmetric: &matrix, order: c)
  }

  /// The smallest eigenvalue of the symmetric `order × order` matrix in `matrix` (row-major; destroyed):
  /// Householder reduction to tridiagonal form, then bisection on the Sturm sequence (which counts the
  /// eigenvalues below a point) inside the Gershgorin interval, to a width of 1e-12 of its scale.
  public static func smallestEigenvalue(symmetric matrix: inout [Double], order n: Int) -> Double {
    precondition(n >= 1 && matrix.count == n * n, "smallestEigenvalue: \(matrix.count) entries for order \(n)")
    if n == 1 { return matrix[0] }
    var v = [Double](repeating: 0, count: n)
    var p = [Double](repeating: 0, count: n)
    for k in 0..<(n - 2) {
      // Reflect column k below the diagonal onto its first entry: A ← H A H, H = I − 2 v vᵀ on k+1..<n.
      var norm = 0.0
      for i in (k + 1)..<n { norm += matrix[i * n + k] * matrix[i * n + k] }
      norm = norm.squareRoot()
      if norm == 0 { continue }
      let first = matrix[(k + 1) * n + k]
      let alpha = first > 0 ? -norm : norm
      var vNorm = 0.0
      for i in (k + 1)..<n {
        v[i] = matrix[i * n + k] - (i == k + 1 ? alpha : 0)
        vNorm += v[i] * v[i]
      }
      vNorm = vNorm.squareRoot()
      if vNorm == 0 { continue }
      for i in (k + 1)..<n { v[i] /= vNorm }
      // p = A v, s = vᵀ p, q = p − s v;  A ← A − 2 (v qᵀ + q vᵀ) on the trailing block.
      var s = 0.0
      for i in (k + 1)..<n {
        var sum = 0.0
        for j in (k + 1)..<n { sum += matrix[i * n + j] * v[j] }
        p[i] = sum
        s += v[i] * sum
      }
      for i in (k + 1)..<n { p[i] -= s * v[i] }
      for i in (k + 1)..<n {
        for j in (k + 1)..<n { matrix[i * n + j] -= 2 * (v[i] * p[j] + p[i] * v[j]) }
      }
      matrix[(k + 1) * n + k] = alpha
      matrix[k * n + k + 1] = alpha
      for i in (k + 2)..<n {
        matrix[i * n + k] = 0
        matrix[k * n + i] = 0
      }
    }
    let diagonal = (0..<n).map { matrix[$0 * n + $0] }
    let offDiagonal = (0..<(n - 1)).map { matrix[($0 + 1) * n + $0] }
    var lower = Double.infinity, upper = -Double.infinity
    for i in 0..<n {
      let radius = (i > 0 ? abs(offDiagonal[i - 1]) : 0) + (i < n - 1 ? abs(offDiagonal[i]) : 0)
      lower = Swift.min(lower, diagonal[i] - radius)
      upper = Swift.max(upper, diagonal[i] + radius)
    }
    /// How many eigenvalues lie below `x` (the negative terms of the Sturm sequence).
    func countBelow(_ x: Double) -> Int {
      var count = 0
      var q = diagonal[0] - x
      if q < 0 { count += 1 }
      for i in 1..<n {
        let previous = q == 0 ? Double.leastNonzeroMagnitude : q
        q = diagonal[i] - x - offDiagonal[i - 1] * offDiagonal[i - 1] / previous
        if q < 0 { count += 1 }
      }
      return count
    }
    let tolerance = 1e-12 * Swift.max(1, abs(lower), abs(upper))
    while upper - lower > tolerance {
      let middle = (lower + upper) / 2
      if middle == lower || middle == upper { break }
      if countBelow(middle) >= 1 { upper = middle } else { lower = middle }
    }
    return (lower + upper) / 2
  }
}

/// A backend that computes with ``QuadraCore/CPUBackend`` and, for every residual join
/// `x + γ ⊙ branch` (``QuadraCore/Backend/layerScaleResidual(_:branch:scale:into:)``), adds the mean over
/// the batch of λ_min of each image's channel correlation matrix to a running total (``MeCo``).
final class FeatureMapRecorder: ForwardingBackend, @unchecked Sendable {
  private let batch: Int
  private let sum = Mutex(0.0)

  init(batch: Int) {
    self.batch = batch
    super.init(name: "meco-recorder")
  }

  /// Σ over the joins so far of the batch mean of λ_min.
  var total: Double { sum.withLock { $0 } }

  override func layerScaleResidual(_ x: Tensor, branch m: Tensor, scale: Tensor, into output: Tensor) {
    super.layerScaleResidual(x, branch: m, scale: scale, into: output)
    // NHWC: image i owns the i-th contiguous slice of H·W positions × C channels.
    guard output.rank == 4, output.shape[0] == batch else { return }
    let positions = output.shape[1] * output.shape[2], channels = output.shape[3]
    guard positions > channels else { return }
    var mean = 0.0
    output.withUnsafeBufferPointer { values in
      for image in 0..<batch {
        let slice = UnsafeBufferPointer(rebasing: values[(image * positions * channels)..<((image + 1) * positions * channels)])
        mean += MeCo.minimumCorrelationEigenvalue(slice, positions: positions, channels: channels)
      }
    }
    mean /= Double(batch)
    sum.withLock { $0 += mean }
  }
}

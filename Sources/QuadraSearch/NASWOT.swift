import Foundation
import Synchronization
import QuadraModels

/// NASWOT, "Neural Architecture Search without Training" (Mellor et al., ICML 2021): how differently
/// an untrained network's units switch for the images of one mini-batch.
///
/// Every GELU input `z` gives one bit per unit, `z > 0` (GELU(z) = z·Φ(z) is positive exactly when z
/// is). Image `i`'s code `cᵢ` concatenates the bits of all `N_A` GELU units of the network; with
/// `d_H` the Hamming distance,
///
///     K[i][j] = N_A − d_H(cᵢ, cⱼ),        score = log |det K|
///
/// (natural log, from an LU factorization in `Double`). Images the network maps to similar codes make
/// `K` near-singular and the score low. The score is a pure function of the architecture, the weight
/// seed (0) and the batch, so it is deterministic.
public enum NASWOT {
  /// The score of `config` (untrained, weights from seed 0) on `images` `[N, H, W, C]`, N ≥ 2.
  ///
  /// - Throws: ``SearchSpaceError`` when the batch has fewer than 2 images or does not fit the model.
  public static func score(_ config: ModelConfig, images: Tensor) throws -> Double {
    let recorder = ActivationCodeRecorder(batch: images.shape[0])
    try recorder.recordForward(of: config, on: images, proxy: "NASWOT", minimumImages: 2)
    return logAbsoluteDeterminant(recorder.kernel())
  }

  /// `K[i][j] = N_A − d_H(cᵢ, cⱼ)` of binary codes given as one `[Bool]` per image (all of one length).
  public static func kernel(codes: [[Bool]]) -> [[Double]] {
    let units = Double(codes.first?.count ?? 0)
    return codes.map { a in
      codes.map { b in units - Double(zip(a, b).reduce(0) { $0 + ($1.0 != $1.1 ? 1 : 0) }) }
    }
  }

  /// `log |det A|` by Gaussian elimination with partial pivoting in `Double` (numpy's `slogdet`
  /// magnitude); `-infinity` for a singular matrix.
  public static func logAbsoluteDeterminant(_ matrix: [[Double]]) -> Double {
    var a = matrix
    let n = a.count
    var total = 0.0
    for column in 0..<n {
      guard let pivot = (column..<n).max(by: { abs(a[$0][column]) < abs(a[$1][column]) }), a[pivot][column] != 0 else {
        return -.infinity
      }
      a.swapAt(column, pivot)
      total += log(abs(a[column][column]))
      for row in (column + 1)..<n {
        let factor = a[row][column] / a[column][column]
        if factor == 0 { continue }
        for k in column..<n { a[row][k] -= factor * a[column][k] }
      }
    }
    return total
  }
}

/// A backend that computes with ``QuadraCore/CPUBackend`` and, for every GELU, adds the agreement of
/// each pair of images' activation bits to a running kernel (the codes themselves are never stored:
/// per GELU they are packed 64 units to a word and compared with XOR and popcount).
final class ActivationCodeRecorder: ForwardingBackend, @unchecked Sendable {
  private let batch: Int
  /// Agreements K[i][j] (units with equal bits) so far, row-major `batch × batch`.
  private let agreements: Mutex<[Int]>

  init(batch: Int) {
    self.batch = batch
    agreements = Mutex([Int](repeating: 0, count: batch * batch))
    super.init(name: "naswot-recorder")
  }

  func kernel() -> [[Double]] {
    let counts = agreements.withLock { $0 }
    return (0..<batch).map { i in (0..<batch).map { j in Double(counts[i * batch + j]) } }
  }

  override func gelu(_ x: Tensor, bias: Tensor?, into output: Tensor) {
    base.gelu(x, bias: bias, into: output)
    // Rows are image-major (NHWC, or [N·H·W, C] for the MLP), so image i owns the i-th contiguous slice.
    guard output.count % batch == 0 else { return }
    let units = output.count / batch
    let words = (units + 63) / 64
    var packed = [UInt64](repeating: 0, count: batch * words)
    output.withUnsafeBufferPointer { values in
      for image in 0..<batch {
        let start = image * units
        for unit in 0..<units where values[start + unit] > 0 {
          packed[image * words + unit / 64] |= 1 << UInt64(unit % 64)
        }
      }
    }
    var local = [Int](repeating: 0, count: batch * batch)
    for i in 0..<batch {
      local[i * batch + i] = units
      for j in (i + 1)..<batch {
        var distance = 0
        for w in 0..<words { distance += (packed[i * words + w] ^ packed[j * words + w]).nonzeroBitCount }
        local[i * batch + j] = units - distance
        local[j * batch + i] = units - distance
      }
    }
    agreements.withLock { total in for index in total.indices { total[index] += local[index] } }
  }

  /// Composed from this backend's primitives, so that the MLP's GELU is recorded like any other.
  override func residualMLP(
    _ x: Tensor, parameters: ResidualMLPParameters, epsilon: Float, into output: Tensor, saved: ResidualMLPSaved
  ) {
    composedResidualMLP(x, parameters: parameters, epsilon: epsilon, into: output, saved: saved)
  }
}

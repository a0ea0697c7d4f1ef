import Testing

@testable import QuadraCore

/// The layer-scaled residual join `y = x + γ ⊙ m` in one pass, against hand-computed values and the
/// product and sum it replaces.
@Suite struct LayerScaleResidualTests {
  @Test func knownValues() {
    let x = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    let m = Tensor(shape: [2, 3], scalars: [10, 20, 30, -1, -2, -3])
    let gamma = Tensor(shape: [3], scalars: [0.5, -1, 2])
    #expect(x.layerScaleResidual(branch: m, scale: gamma).scalars == [6, -18, 63, 3.5, 7, 0])
    let dy = Tensor(shape: [2, 3], scalars: [1, 1, 1, 2, 0, -1])
    let (dm, dGamma) = Tensor.layerScaleResidualBackward(branch: m, scale: gamma, outputGradient: dy)
    #expect(dm.scalars == [0.5, -1, 2, 1, 0, -2])
    // ∂γ_j = Σ_r dy[r, j] · m[r, j]
    #expect(dGamma.scalars == [10 - 2, 20, 30 + 3])
  }

  /// 3,001 rows of C = 37 (16 reduction chunks, vector tails): the forward pass within one rounding of
  /// `x + m · γ`; ∂m exactly `γ · dy`; ∂γ the same bits as the product's `sumOfProducts` and the same on 1
  /// and 3 threads.
  @Test func matchesProductAndSum() {
    var generator = RandomGenerator(seed: 81)
    let shape = [3001, 37]
    let x = Tensor.uniform(shape: shape, lower: -2, upper: 2, using: &generator)
    let m = Tensor.uniform(shape: shape, lower: -2, upper: 2, using: &generator)
    let gamma = Tensor.uniform(shape: [37], lower: -1, upper: 1, using: &generator)
    let dy = Tensor.uniform(shape: shape, lower: -1, upper: 1, using: &generator)

    let fused = x.layerScaleResidual(branch: m, scale: gamma)
    let composed = x.adding(m.multiplying(gamma))
    #expect(fused.subtracting(composed).maxAbs() <= 4e-7 * (1 + composed.maxAbs()))

    let one = Parallel.withThreadCount(1) {
      Tensor.layerScaleResidualBackward(branch: m, scale: gamma, outputGradient: dy)
    }
    let three = Parallel.withThreadCount(3) {
      Tensor.layerScaleResidualBackward(branch: m, scale: gamma, outputGradient: dy)
    }
    #expect(one.branch.scalars == dy.multiplying(gamma).scalars)
    #expect(one.scale.scalars == Tensor.sumOfProducts(dy, m, toShape: [37]).scalars)
    #expect(three.branch.scalars == one.branch.scalars)
    #expect(three.scale.scalars == one.scale.scalars)
  }

  @Test func emptyRowsGiveZeroScaleGradient() {
    let empty = Tensor(zeros: [0, 4])
    let gamma = Tensor(shape: [4], scalars: [1, 2, 3, 4])
    #expect(empty.layerScaleResidual(branch: empty, scale: gamma).shape == [0, 4])
    let (dm, dGamma) = Tensor.layerScaleResidualBackward(branch: empty, scale: gamma, outputGradient: empty)
    #expect(dm.shape == [0, 4])
    #expect(dGamma.scalars == [0, 0, 0, 0])
  }
}

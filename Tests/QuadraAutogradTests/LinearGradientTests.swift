import Testing

@testable import QuadraAutograd
@testable import QuadraCore

@Suite struct LinearGradientTests {
  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func matmulGradients(transposeA: Bool, transposeB: Bool) {
    var generator = RandomGenerator(seed: 21)
    let m = 5, k = 7, n = 3
    let a = Tensor.normal(shape: transposeA ? [k, m] : [m, k], using: &generator)
    let b = Tensor.normal(shape: transposeB ? [n, k] : [k, n], using: &generator)
    checkGradients([a, b]) { v in matmul(v[0], v[1], transposeA: transposeA, transposeB: transposeB) }
  }

  @Test(arguments: [(false, false), (true, true), (true, false)])
  func batchedMatmulGradients(transposeA: Bool, transposeB: Bool) {
    var generator = RandomGenerator(seed: 22)
    let batch = 2, m = 3, k = 5, n = 4
    let a = Tensor.normal(shape: transposeA ? [batch, k, m] : [batch, m, k], using: &generator)
    let b = Tensor.normal(shape: transposeB ? [batch, n, k] : [batch, k, n], using: &generator)
    checkGradients([a, b]) { v in matmul(v[0], v[1], transposeA: transposeA, transposeB: transposeB) }
  }

  @Test func linearGradientsWithBias() {
    var generator = RandomGenerator(seed: 23)
    let x = Tensor.normal(shape: [3, 7], using: &generator)
    let weight = Tensor.normal(shape: [5, 7], using: &generator)
    let bias = Tensor.normal(shape: [5], using: &generator)
    checkGradients([x, weight, bias]) { v in linear(v[0], weight: v[1], bias: v[2]) }
  }

  @Test func linearGradientsWithoutBias() {
    var generator = RandomGenerator(seed: 24)
    let x = Tensor.normal(shape: [4, 9], using: &generator)
    let weight = Tensor.normal(shape: [11, 9], using: &generator)
    checkGradients([x, weight]) { v in linear(v[0], weight: v[1], bias: nil) }
  }

  @Test func linearGradientsForRank3Input() {
    var generator = RandomGenerator(seed: 25)
    let x = Tensor.normal(shape: [2, 3, 7], using: &generator)
    let weight = Tensor.normal(shape: [19, 7], using: &generator)
    let bias = Tensor.normal(shape: [19], using: &generator)
    checkGradients([x, weight, bias]) { v in linear(v[0], weight: v[1], bias: v[2]) }
  }

  @Test func untrackedInputsGetNoGradient() throws {
    var generator = RandomGenerator(seed: 26)
    let x = Variable(Tensor.normal(shape: [2, 3], using: &generator))
    let weight = Variable(Tensor.normal(shape: [4, 3], using: &generator), requiresGrad: true)
    let bias = Variable(Tensor.normal(shape: [4], using: &generator))
    try linear(x, weight: weight, bias: bias).sum().backward()
    #expect(x.grad == nil && bias.grad == nil)
    // dW = 1ᵀ · X: each row of dW is the column sums of X.
    let columnSums = (0..<3).map { j in (0..<2).map { x.value[$0, j] }.reduce(0, +) }
    let expected = Tensor(shape: [4, 3], scalars: Array((0..<4).map { _ in columnSums }.joined()))
    #expect(maxAbsDifference(try! #require(weight.grad), expected) < 1e-5)

    let a = Variable(Tensor.normal(shape: [2, 3], using: &generator), requiresGrad: true)
    let b = Variable(Tensor.normal(shape: [3, 2], using: &generator))
    try matmul(a, b).sum().backward()
    #expect(a.grad != nil && b.grad == nil)
  }
}

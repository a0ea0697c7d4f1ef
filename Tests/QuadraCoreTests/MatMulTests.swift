import Testing

@testable import QuadraCore

/// Plain `[m, k] · [k, n]` on rank-2 tensors in Double, with the transposes applied by index.
private func naiveMatMul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> Tensor {
  let m = transposeA ? a.shape[1] : a.shape[0]
  let k = transposeA ? a.shape[0] : a.shape[1]
  let n = transposeB ? b.shape[0] : b.shape[1]
  let x = a.scalars, y = b.scalars
  var values = [Float]()
  for i in 0..<m {
    for j in 0..<n {
      var sum = 0.0
      for p in 0..<k {
        sum += Double(transposeA ? x[p * m + i] : x[i * k + p]) * Double(transposeB ? y[j * k + p] : y[p * n + j])
      }
      values.append(Float(sum))
    }
  }
  return Tensor(shape: [m, n], scalars: values)
}

/// Rows `[index]` of a rank-3 tensor as a rank-2 tensor.
private func slice(_ t: Tensor, _ index: Int) -> Tensor {
  let size = t.shape[1] * t.shape[2]
  return Tensor(shape: [t.shape[1], t.shape[2]], scalars: Array(t.scalars[index * size..<(index + 1) * size]))
}

@Suite struct MatMulTests {
  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func rank2MatchesNaive(transposeA: Bool, transposeB: Bool) {
    var generator = RandomGenerator(seed: 1)
    let m = 7, k = 13, n = 19
    let a = Tensor.normal(shape: transposeA ? [k, m] : [m, k], using: &generator)
    let b = Tensor.normal(shape: transposeB ? [n, k] : [k, n], using: &generator)
    let result = a.matmul(b, transposeSelf: transposeA, transposeOther: transposeB)
    #expect(result.shape == [m, n])
    #expect(maxDifference(result, naiveMatMul(a, b, transposeA: transposeA, transposeB: transposeB)) < 1e-4)
  }

  @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
  func batchedMatchesPerBatchProducts(transposeA: Bool, transposeB: Bool) {
    var generator = RandomGenerator(seed: 2)
    let batch = 3, m = 5, k = 11, n = 17
    let a = Tensor.normal(shape: transposeA ? [batch, k, m] : [batch, m, k], using: &generator)
    let b = Tensor.normal(shape: transposeB ? [batch, n, k] : [batch, k, n], using: &generator)
    let result = a.matmul(b, transposeSelf: transposeA, transposeOther: transposeB)
    #expect(result.shape == [batch, m, n])
    for index in 0..<batch {
      let expected = naiveMatMul(slice(a, index), slice(b, index), transposeA: transposeA, transposeB: transposeB)
      #expect(maxDifference(slice(result, index), expected) < 1e-4)
    }
  }

  /// Mid-sized batches run one batch per thread; large ones run in turn, each on all threads.
  @Test func batchedProductsSplitAcrossThreads() {
    var generator = RandomGenerator(seed: 6)
    for (batch, m, k, n) in [(6, 40, 45, 50), (2, 130, 129, 131)] {
      let a = Tensor.normal(shape: [batch, m, k], using: &generator)
      let b = Tensor.normal(shape: [batch, n, k], using: &generator)
      for threads in [1, 2] {
        let result = Parallel.withThreadCount(threads) { a.matmul(b, transposeOther: true) }
        for index in 0..<batch {
          let expected = naiveMatMul(slice(a, index), slice(b, index), transposeA: false, transposeB: true)
          #expect(maxDifference(slice(result, index), expected) < 1e-3)
        }
      }
    }
  }

  @Test func linearMatchesNaiveWithAndWithoutBias() {
    var generator = RandomGenerator(seed: 3)
    let input = Tensor.normal(shape: [2, 5, 13], using: &generator)
    let weight = Tensor.normal(shape: [19, 13], using: &generator)
    let bias = Tensor.normal(shape: [19], using: &generator)
    let product = naiveMatMul(input.reshaped([10, 13]), weight, transposeA: false, transposeB: true)
    let plain = input.linear(weight: weight, bias: nil)
    #expect(plain.shape == [2, 5, 19])
    #expect(maxDifference(plain.reshaped([10, 19]), product) < 1e-4)
    let biased = input.linear(weight: weight, bias: bias)
    var expected = product
    for i in 0..<10 {
      for j in 0..<19 { expected[i, j] += bias[j] }
    }
    #expect(maxDifference(biased.reshaped([10, 19]), expected) < 1e-4)
  }

  @Test func linearBackwardMatchesNaive() {
    var generator = RandomGenerator(seed: 4)
    // 70 outputs: two 32-column groups and a scalar tail in the bias sums.
    let input = Tensor.normal(shape: [3, 7, 23], using: &generator)
    let weight = Tensor.normal(shape: [70, 23], using: &generator)
    let outputGradient = Tensor.normal(shape: [3, 7, 70], using: &generator)
    let dY = outputGradient.reshaped([21, 70])
    for threads in [1, 2] {
      let gradients = Parallel.withThreadCount(threads) {
        Tensor.linearBackward(input: input, weight: weight, outputGradient: outputGradient, hasBias: true)
      }
      let dX = try! #require(gradients.input)
      #expect(dX.shape == [3, 7, 23])
      #expect(maxDifference(dX.reshaped([21, 23]), naiveMatMul(dY, weight, transposeA: false, transposeB: false)) < 1e-4)
      #expect(
        maxDifference(gradients.weight, naiveMatMul(dY, input.reshaped([21, 23]), transposeA: true, transposeB: false))
          < 1e-4)
      var sums = [Float](repeating: 0, count: 70)
      for i in 0..<21 {
        for j in 0..<70 { sums[j] += dY[i, j] }
      }
      #expect(maxDifference(try! #require(gradients.bias), Tensor(shape: [70], scalars: sums)) < 1e-4)
    }
    let withoutInput = Tensor.linearBackward(
      input: input, weight: weight, outputGradient: outputGradient, needsInputGradient: false, hasBias: false)
    #expect(withoutInput.input == nil && withoutInput.bias == nil)
  }

  @Test func columnSumsHandlesEveryWidth() {
    var generator = RandomGenerator(seed: 5)
    // 1000 rows × 100 columns is enough work for two threads to split the columns.
    for (rows, columns) in [(9, 1), (9, 7), (9, 8), (9, 33), (9, 45), (1000, 100)] {
      let x = Tensor.normal(shape: [rows, columns], using: &generator)
      var expected = [Double](repeating: 0, count: columns)
      x.withUnsafeBufferPointer { values in
        for i in 0..<rows {
          for j in 0..<columns { expected[j] += Double(values[i * columns + j]) }
        }
      }
      for threads in [1, 2] {
        let sums = Parallel.withThreadCount(threads) { x.sum(alongAxes: [0]) }
        #expect(maxDifference(sums, Tensor(shape: [columns], scalars: expected.map { Float($0) })) < 1e-3)
      }
    }
  }

  @Test func mismatchedInnerDimensionsTrap() async {
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).matmul(Tensor(zeros: [4, 2]))
    }
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 2, 3]).matmul(Tensor(zeros: [3, 3, 2]))
    }
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).linear(weight: Tensor(zeros: [4, 2]), bias: nil)
    }
  }
}

import Foundation
import Testing

@testable import QuadraCore

@Suite struct ElementwiseTests {
  /// Shape pairs covering same shape, trailing vector, middle broadcast, scalar, both sides broadcast,
  /// sizes that are not multiples of 8, and one large enough to run on several threads.
  static let shapePairs: [([Int], [Int])] = [
    ([2, 3, 5, 7], [2, 3, 5, 7]),
    ([2, 3, 5, 7], [7]),
    ([7], [2, 3, 5, 7]),
    ([2, 3, 5, 7], [1, 3, 1, 7]),
    ([2, 1, 5, 1], [1, 3, 1, 7]),
    ([3, 1], [1, 4]),
    ([2, 3, 5, 7], []),
    ([], [5]),
    ([4, 9, 9, 33], [33]),
    ([4, 9, 9, 33], [4, 1, 1, 33]),
    ([64, 40, 37], [64, 40, 37]),
    ([64, 40, 37], [40, 1]),
  ]

  @Test(arguments: 0..<shapePairs.count)
  func broadcastingMatchesReference(_ pair: Int) {
    let (sa, sb) = Self.shapePairs[pair]
    let a = randomTensor(sa, seed: UInt64(pair)), b = randomTensor(sb, seed: UInt64(100 + pair))
    let sum = a + b, difference = a - b, product = a * b
    #expect(sum.shape == Tensor.broadcastShape(sa, sb))
    #expect(maxDifference(sum, referenceBroadcast(a, b, +)) == 0)
    #expect(maxDifference(difference, referenceBroadcast(a, b, -)) == 0)
    #expect(maxDifference(product, referenceBroadcast(a, b, *)) == 0)
  }

  @Test func scalarArithmetic() {
    let a = Tensor(shape: [2, 5], scalars: (0..<10).map(Float.init))
    #expect((a * 2).scalars == (0..<10).map { Float($0) * 2 })
    #expect((3 * a).scalars == (0..<10).map { Float($0) * 3 })
    #expect((a + 1.5).scalars == (0..<10).map { Float($0) + 1.5 })
    #expect((a - 1).scalars == (0..<10).map { Float($0) - 1 })
    #expect((1 - a).scalars == (0..<10).map { 1 - Float($0) })
    #expect((-a).scalars == (0..<10).map { -Float($0) })
  }

  @Test func inPlaceOperatorsBroadcastTheRightOperand() {
    var a = randomTensor([3, 4, 9], seed: 1)
    let original = a
    let shared = a  // in-place update must not write through shared storage
    let b = randomTensor([9], seed: 2)
    a += b
    #expect(maxDifference(a, referenceBroadcast(original, b, +)) == 0)
    a -= b
    a *= b
    #expect(maxDifference(a, referenceBroadcast(referenceBroadcast(referenceBroadcast(original, b, +), b, -), b, *)) == 0)
    a *= 0.5
    #expect(shared.scalars == original.scalars)
  }

  @Test func broadcastedIsTheInverseShapeOfSumToShape() {
    let b = randomTensor([1, 3, 1, 7], seed: 3)
    let expanded = b.broadcasted(to: [2, 3, 5, 7])
    #expect(maxDifference(expanded, referenceBroadcast(Tensor(zeros: [2, 3, 5, 7]), b, { $1 })) == 0)
    #expect(maxDifference(expanded.sum(toShape: [1, 3, 1, 7]), b * 10) < 1e-5)
  }

  static let reductionCases: [([Int], [Int])] = [
    ([2, 3, 5, 7], [7]),
    ([2, 3, 5, 7], [1, 3, 1, 7]),
    ([2, 3, 5, 7], [2, 1, 5, 1]),
    ([2, 3, 5, 7], [3, 5, 1]),
    ([2, 3, 5, 7], []),
    ([2, 3, 5, 7], [2, 3, 5, 7]),
    ([513, 33], [33]),
    ([300, 200], [300, 1]),
    ([9, 100, 40], [9, 1, 40]),
  ]

  @Test(arguments: 0..<reductionCases.count)
  func sumToShapeMatchesReference(_ index: Int) {
    let (shape, target) = Self.reductionCases[index]
    let t = randomTensor(shape, seed: UInt64(index))
    let reduced = t.sum(toShape: target)
    #expect(reduced.shape == target)
    #expect(maxDifference(reduced, referenceSum(t, toShape: target)) < 1e-4)
  }

  @Test func sumOfProductsMatchesProductThenSum() {
    for (shape, target) in [([4, 5, 6, 19], [19]), ([3, 7], [1, 7]), ([2, 3, 5, 7], [1, 3, 1, 7]), ([600, 40], [40])] {
      let a = randomTensor(shape, seed: 11), b = randomTensor(shape, seed: 12)
      let fused = Tensor.sumOfProducts(a, b, toShape: target)
      #expect(fused.shape == target)
      #expect(maxDifference(fused, referenceSum(referenceBroadcast(a, b, *), toShape: target)) < 1e-4)
    }
  }

  @Test func sumsAndMeansAlongAxes() {
    let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
    #expect(t.sum().scalar == 21)
    #expect(t.sum().shape == [])
    #expect(t.mean().scalar == 3.5)
    #expect(t.sum(alongAxes: [0]).scalars == [5, 7, 9])
    #expect(t.sum(alongAxes: [-1]).scalars == [6, 15])
    #expect(t.sum(alongAxes: [1], keepingDimensions: true).shape == [2, 1])
    #expect(t.mean(alongAxes: [0, 1]).scalars == [3.5])
    #expect(t.mean(alongAxes: [1]).scalars == [2, 5])
    let big = randomTensor([5, 6, 7, 8], seed: 4)
    #expect(maxDifference(big.sum(alongAxes: [1, 3]), referenceSum(big, toShape: [5, 1, 7, 1]).reshaped([5, 7])) < 1e-4)
    // The all-elements sum accumulates in Double, so a large sum of ones is exact.
    #expect(Tensor(ones: [1 << 22]).sum().scalar == Float(1 << 22))
  }

  @Test func helpers() {
    let t = Tensor(shape: [3, 5], scalars: [1, -7, 2, 0, 3, 4, 5, -6, 1, 1, 2, 2, 2, 2, -6.5])
    #expect(t.maxAbs() == 7)
    #expect(Tensor.zeros(like: t).scalars == [Float](repeating: 0, count: 15))
    #expect(Tensor.ones(like: t).shape == [3, 5])
    #expect(t.squaredSum() == t.scalars.map { Double($0 * $0) }.reduce(0, +))
    #expect(t.allClose(t + 1e-7))
    #expect(!t.allClose(t + 1e-3))
    #expect(!t.allClose(t.reshaped([15])))
  }

  @Test func incompatibleBroadcastTraps() async {
    let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
      _ = Tensor(zeros: [2, 3, 5, 7]) + Tensor(zeros: [5])
    }
    let message = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    #expect(message.contains("add: shapes [2, 3, 5, 7] and [5] cannot be broadcast together"))
    await #expect(processExitsWith: .failure) {
      _ = Tensor(zeros: [2, 3]).sum(toShape: [4])
    }
  }
}

import Foundation

@testable import QuadraCore

// Plain, obviously-correct reference implementations the kernels are checked against.

func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
  var generator = RandomGenerator(seed: seed)
  return Tensor.normal(shape: shape, std: scale, using: &generator)
}

/// Largest absolute elementwise difference; the shapes must match.
func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
  precondition(a.shape == b.shape, "maxDifference: \(a.shape) vs \(b.shape)")
  return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
}

/// Row-major strides of a shape.
func contiguousStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  for axis in stride(from: shape.count - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
  return strides
}

/// The multi-index of flat position `flat` in `shape`.
func multiIndex(_ flat: Int, _ shape: [Int]) -> [Int] {
  var rest = flat
  var index = [Int](repeating: 0, count: shape.count)
  for axis in stride(from: shape.count - 1, through: 0, by: -1) {
    index[axis] = rest % shape[axis]
    rest /= shape[axis]
  }
  return index
}

/// Elementwise `op` with NumPy broadcasting, one element at a time.
func referenceBroadcast(_ a: Tensor, _ b: Tensor, _ op: (Float, Float) -> Float) -> Tensor {
  let rank = max(a.rank, b.rank)
  let sa = [Int](repeating: 1, count: rank - a.rank) + a.shape
  let sb = [Int](repeating: 1, count: rank - b.rank) + b.shape
  let out = zip(sa, sb).map { max($0, $1) }
  let stA = contiguousStrides(sa), stB = contiguousStrides(sb)
  let av = a.scalars, bv = b.scalars
  var result = [Float](repeating: 0, count: out.reduce(1, *))
  for flat in result.indices {
    let index = multiIndex(flat, out)
    var ia = 0, ib = 0
    for axis in 0..<rank {
      ia += (sa[axis] == 1 ? 0 : index[axis]) * stA[axis]
      ib += (sb[axis] == 1 ? 0 : index[axis]) * stB[axis]
    }
    result[flat] = op(av[ia], bv[ib])
  }
  return Tensor(shape: out, scalars: result)
}

/// Sums `t` down to `target` (right-aligned, 1 where summed), in Double.
func referenceSum(_ t: Tensor, toShape target: [Int]) -> Tensor {
  let padded = [Int](repeating: 1, count: t.rank - target.count) + target
  let strides = contiguousStrides(padded)
  var result = [Double](repeating: 0, count: target.reduce(1, *))
  let values = t.scalars
  for flat in values.indices {
    let index = multiIndex(flat, t.shape)
    var o = 0
    for axis in 0..<t.rank where padded[axis] != 1 { o += index[axis] * strides[axis] }
    result[o] += Double(values[flat])
  }
  return Tensor(shape: target, scalars: result.map { Float($0) })
}

func referencePermute(_ t: Tensor, _ axes: [Int]) -> Tensor {
  let outShape = axes.map { t.shape[$0] }
  let inStrides = contiguousStrides(t.shape)
  let values = t.scalars
  var result = [Float](repeating: 0, count: t.count)
  for flat in result.indices {
    let index = multiIndex(flat, outShape)
    var source = 0
    for (i, axis) in axes.enumerated() { source += index[i] * inStrides[axis] }
    result[flat] = values[source]
  }
  return Tensor(shape: outShape, scalars: result)
}

/// LayerNorm of one row in Double.
func referenceLayerNorm(_ row: [Float], weight: [Float], bias: [Float], epsilon: Double) -> [Float] {
  let x = row.map(Double.init)
  let mean = x.reduce(0, +) / Double(x.count)
  let variance = x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count)
  let inv = 1 / (variance + epsilon).squareRoot()
  return x.indices.map { Float((x[$0] - mean) * inv * Double(weight[$0]) + Double(bias[$0])) }
}

func referenceGELU(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

func referenceGELUDerivative(_ x: Double) -> Double {
  0.5 * (1 + erf(x / 2.0.squareRoot())) + x * exp(-x * x / 2) / (2 * Double.pi).squareRoot()
}

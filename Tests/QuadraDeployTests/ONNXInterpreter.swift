import Foundation
import QuadraDeploy

/// A dense float array for the reference interpreter (row-major).
struct NDArray {
  var shape: [Int]
  var data: [Float]

  init(shape: [Int], data: [Float]) {
    precondition(shape.reduce(1, *) == data.count, "NDArray: \(data.count) values for shape \(shape)")
    self.shape = shape
    self.data = data
  }

  var count: Int { data.count }

  static func strides(_ shape: [Int]) -> [Int] {
    var result = [Int](repeating: 1, count: shape.count)
    for axis in stride(from: shape.count - 2, through: 0, by: -1) { result[axis] = result[axis + 1] * shape[axis + 1] }
    return result
  }
}

struct InterpreterError: Error, CustomStringConvertible {
  var description: String
}

/// A deliberately plain interpreter for exactly the ops ``ONNXExporter`` emits, following the ONNX operator
/// specification at opset 17 (numpy broadcasting, NCHW convolutions with groups, LayerNormalization over the
/// last axis), accumulating in Double. It shares no code with the engine, so agreement checks the export.
struct ONNXInterpreter {
  let model: Onnx_ModelProto

  func run(_ input: NDArray) throws -> NDArray {
    var values: [String: NDArray] = [:]
    var int64Constants: [String: [Int64]] = [:]
    for tensor in model.graph.initializer {
      let shape = tensor.dims.map(Int.init)
      switch tensor.dataType {
      case Int32(Onnx_TensorProto.DataType.float.rawValue):
        let count = shape.reduce(1, *)
        guard tensor.rawData.count == 4 * count else { throw InterpreterError(description: "\(tensor.name): raw data size") }
        var floats = [Float](repeating: 0, count: count)
        tensor.rawData.withUnsafeBytes { raw in
          for i in 0..<count { floats[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
        }
        values[tensor.name] = NDArray(shape: shape, data: floats)
      case Int32(Onnx_TensorProto.DataType.int64.rawValue):
        int64Constants[tensor.name] = tensor.int64Data
      default:
        throw InterpreterError(description: "\(tensor.name): unsupported initializer type \(tensor.dataType)")
      }
    }
    values[model.graph.input[0].name] = input
    for node in model.graph.node {
      func arg(_ index: Int) throws -> NDArray {
        guard index < node.input.count, let value = values[node.input[index]] else {
          throw InterpreterError(description: "\(node.name): input \(index) unavailable")
        }
        return value
      }
      func ints(_ name: String) -> [Int]? { node.attribute.first { $0.name == name }.map { $0.ints.map(Int.init) } }
      func int(_ name: String) -> Int? { node.attribute.first { $0.name == name }.map { Int($0.i) } }
      func float(_ name: String) -> Float? { node.attribute.first { $0.name == name }.map(\.f) }
      let outputs: [NDArray]
      switch node.opType {
      case "Add": outputs = [try Self.broadcast(try arg(0), try arg(1), +)]
      case "Mul": outputs = [try Self.broadcast(try arg(0), try arg(1), *)]
      case "Div": outputs = [try Self.broadcast(try arg(0), try arg(1), /)]
      case "Erf":
        let x = try arg(0)
        outputs = [NDArray(shape: x.shape, data: x.data.map { Float(Foundation.erf(Double($0))) })]
      case "Transpose": outputs = [Self.transpose(try arg(0), ints("perm")!)]
      case "Reshape":
        let x = try arg(0)
        var shape = int64Constants[node.input[1]]!.map(Int.init)
        if let unknown = shape.firstIndex(of: -1) {
          shape[unknown] = x.count / shape.enumerated().filter { $0.offset != unknown }.map(\.element).reduce(1, *)
        }
        outputs = [NDArray(shape: shape, data: x.data)]
      case "MatMul": outputs = [try Self.matmul(try arg(0), try arg(1))]
      case "Gemm":
        let product = try Self.matmul(try arg(0), Self.transpose(try arg(1), [1, 0]))
        outputs = [try Self.broadcast(product, try arg(2), +)]
      case "LayerNormalization":
        guard int("axis") == -1 else { throw InterpreterError(description: "\(node.name): axis must be -1") }
        outputs = [Self.layerNorm(try arg(0), scale: try arg(1), bias: try arg(2), epsilon: float("epsilon") ?? 1e-5)]
      case "ReduceMean":
        guard ints("axes") == [2, 3], int("keepdims") == 0 else { throw InterpreterError(description: "\(node.name): axes") }
        outputs = [Self.spatialMean(try arg(0))]
      case "Split":
        guard int("axis") == 1 else { throw InterpreterError(description: "\(node.name): axis must be 1") }
        outputs = Self.splitChannels(try arg(0), sizes: int64Constants[node.input[1]]!.map(Int.init))
      case "Conv":
        outputs = [
          try Self.conv(
            try arg(0), weight: try arg(1), bias: try arg(2), stride: ints("strides")![0], padding: ints("pads")![0],
            group: int("group") ?? 1)
        ]
      default:
        throw InterpreterError(description: "\(node.name): unsupported op \(node.opType)")
      }
      guard outputs.count == node.output.count else { throw InterpreterError(description: "\(node.name): output count") }
      for (name, value) in zip(node.output, outputs) { values[name] = value }
    }
    guard let result = values[model.graph.output[0].name] else { throw InterpreterError(description: "no graph output") }
    return result
  }

  /// Numpy broadcasting of two arrays.
  static func broadcast(_ a: NDArray, _ b: NDArray, _ op: (Float, Float) -> Float) throws -> NDArray {
    let rank = max(a.shape.count, b.shape.count)
    let sa = [Int](repeating: 1, count: rank - a.shape.count) + a.shape
    let sb = [Int](repeating: 1, count: rank - b.shape.count) + b.shape
    var shape: [Int] = []
    for (x, y) in zip(sa, sb) {
      guard x == y || x == 1 || y == 1 else { throw InterpreterError(description: "cannot broadcast \(a.shape) and \(b.shape)") }
      shape.append(max(x, y))
    }
    let stridesA = NDArray.strides(sa), stridesB = NDArray.strides(sb), strides = NDArray.strides(shape)
    let count = shape.reduce(1, *)
    var result = [Float](repeating: 0, count: count)
    for index in 0..<count {
      var ia = 0, ib = 0, rest = index
      for axis in 0..<rank {
        let coordinate = rest / strides[axis]
        rest %= strides[axis]
        if sa[axis] != 1 { ia += coordinate * stridesA[axis] }
        if sb[axis] != 1 { ib += coordinate * stridesB[axis] }
      }
      result[index] = op(a.data[ia], b.data[ib])
    }
    return NDArray(shape: shape, data: result)
  }

  static func transpose(_ x: NDArray, _ perm: [Int]) -> NDArray {
    let shape = perm.map { x.shape[$0] }
    let sourceStrides = NDArray.strides(x.shape), strides = NDArray.strides(shape)
    var result = [Float](repeating: 0, count: x.count)
    for index in 0..<x.count {
      var source = 0, rest = index
      for axis in 0..<shape.count {
        source += (rest / strides[axis]) * sourceStrides[perm[axis]]
        rest %= strides[axis]
      }
      result[index] = x.data[source]
    }
    return NDArray(shape: shape, data: result)
  }

  /// `[..., K] × [K, M]`.
  static func matmul(_ a: NDArray, _ b: NDArray) throws -> NDArray {
    guard b.shape.count == 2, a.shape.last == b.shape[0] else { throw InterpreterError(description: "matmul \(a.shape) \(b.shape)") }
    let k = b.shape[0], m = b.shape[1], rows = a.count / k
    var result = [Float](repeating: 0, count: rows * m)
    for row in 0..<rows {
      for column in 0..<m {
        var sum = 0.0
        for i in 0..<k { sum += Double(a.data[row * k + i]) * Double(b.data[i * m + column]) }
        result[row * m + column] = Float(sum)
      }
    }
    return NDArray(shape: Array(a.shape.dropLast()) + [m], data: result)
  }

  static func layerNorm(_ x: NDArray, scale: NDArray, bias: NDArray, epsilon: Float) -> NDArray {
    let c = x.shape.last!
    var result = x.data
    for start in stride(from: 0, to: x.count, by: c) {
      let row = x.data[start..<start + c].map(Double.init)
      let mean = row.reduce(0, +) / Double(c)
      let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
      let inverse = 1 / (variance + Double(epsilon)).squareRoot()
      for i in 0..<c { result[start + i] = Float((row[i] - mean) * inverse * Double(scale.data[i]) + Double(bias.data[i])) }
    }
    return NDArray(shape: x.shape, data: result)
  }

  static func spatialMean(_ x: NDArray) -> NDArray {
    let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
    var result = [Float](repeating: 0, count: n * c)
    for i in 0..<(n * c) {
      result[i] = Float(x.data[i * plane..<(i + 1) * plane].reduce(0.0) { $0 + Double($1) } / Double(plane))
    }
    return NDArray(shape: [n, c], data: result)
  }

  static func splitChannels(_ x: NDArray, sizes: [Int]) -> [NDArray] {
    let (n, plane) = (x.shape[0], x.shape[2] * x.shape[3])
    var offset = 0
    return sizes.map { size in
      var data: [Float] = []
      for image in 0..<n {
        let start = (image * x.shape[1] + offset) * plane
        data += x.data[start..<start + size * plane]
      }
      offset += size
      return NDArray(shape: [n, size, x.shape[2], x.shape[3]], data: data)
    }
  }

  /// NCHW convolution, weight `[O, I/group, k, k]`, symmetric padding.
  static func conv(_ x: NDArray, weight: NDArray, bias: NDArray, stride: Int, padding: Int, group: Int) throws -> NDArray {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (o, perGroup, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
    guard c == perGroup * group, o % group == 0 else { throw InterpreterError(description: "conv shapes \(x.shape) \(weight.shape) group \(group)") }
    let oh = (h + 2 * padding - kh) / stride + 1, ow = (w + 2 * padding - kw) / stride + 1
    let outputsPerGroup = o / group
    var result = [Float](repeating: 0, count: n * o * oh * ow)
    for image in 0..<n {
      for output in 0..<o {
        let firstInput = (output / outputsPerGroup) * perGroup
        for row in 0..<oh {
          for column in 0..<ow {
            var sum = Double(bias.data[output])
            for input in 0..<perGroup {
              for dy in 0..<kh {
                let y = row * stride - padding + dy
                guard y >= 0, y < h else { continue }
                for dx in 0..<kw {
                  let xx = column * stride - padding + dx
                  guard xx >= 0, xx < w else { continue }
                  sum += Double(x.data[((image * c + firstInput + input) * h + y) * w + xx])
                    * Double(weight.data[((output * perGroup + input) * kh + dy) * kw + dx])
                }
              }
            }
            result[((image * o + output) * oh + row) * ow + column] = Float(sum)
          }
        }
      }
    }
    return NDArray(shape: [n, o, oh, ow], data: result)
  }
}

import ArgumentParser
import Foundation
import QuadraDeploy
import QuadraIO
import QuadraModels

struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export",
    abstract: "Export a checkpoint as an ONNX model (opset 17) for ONNX Runtime, TensorRT and other runtimes.",
    discussion: """
      Input `images` [batch, C, H, W] float32 (NCHW, normalized as (pixel / maxValue - mean) / std with \
      the statistics in the metadata), output `logits` [batch, classes]. The batch axis is dynamic; height \
      and width are dynamic unless --resolution fixes them. Weights are initializers named as in the \
      checkpoint; metadata_props hold the model config, normalization and class names.
      """)

  @Option(help: "The weights: a .safetensors file or a run directory.") var checkpoint: String
  @Option(help: "The ONNX file to write.") var out: String
  @Option(help: "Fix the input height and width (from the model's minimum input size to 8192); default: dynamic.")
  var resolution: Int?
  @Flag(help: "Print a JSON summary instead of a sentence.") var json = false

  struct Report: Codable {
    var model: String
    var out: String
    var opset: Int64
    var nodes: Int
    var initializers: Int
    var bytes: Int
  }

  func validate() throws {
    guard !out.isEmpty else { throw ValidationError("--out must name a file") }
    if let resolution, !(1...ONNXExporter.maximumResolution).contains(resolution) {
      throw ValidationError("--resolution must be in 1...\(ONNXExporter.maximumResolution), got \(resolution)")
    }
  }

  func run() throws {
    let deployable = try DeployableModel(contentsOf: URL(fileURLWithPath: checkpoint))
    let model = try ONNXExporter.makeModel(deployable, resolution: resolution)
    let url = URL(fileURLWithPath: out)
    let data = try model.serializedData()
    try AtomicFile.write(data, to: url)
    let report = Report(
      model: deployable.config.name, out: url.path, opset: ONNXExporter.opsetVersion, nodes: model.graph.node.count,
      initializers: model.graph.initializer.count, bytes: data.count)
    if json {
      try Terminal.printJSON(report)
    } else {
      print(
        "exported \(report.model) to \(report.out): opset \(report.opset), \(report.nodes) nodes, "
          + "\(report.initializers) initializers, \(report.bytes) bytes")
    }
  }
}

import ArgumentParser
import Foundation
import QuadraData
import QuadraDeploy
import QuadraModels

struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Classify images from IDX or NumPy .npy files with a checkpoint.",
    discussion: """
      Inputs: IDX image files ([N, H, W] or [N, H, W, C] bytes, optionally gzipped) or .npy arrays (uint8 or \
      float32; [N, H, W], [N, H, W, C] or [N, C, H, W]) of raw pixel values, on the scale the model was trained \
      on (0-255 for IDX data, 0-16 for the digits). They are normalized with the statistics saved in the checkpoint.
      """)

  @Option(help: "The weights: a .safetensors file or a run directory.") var checkpoint: String
  @Argument(help: "IDX or .npy image files.") var inputs: [String]
  @Option(help: "Classes to print per image (1 to the model's class count).") var topK: Int = 5
  @Option(help: "Also write the raw logits: FILE.npy (float32 [N, classes]) or FILE.json.") var logits: String?
  @Option(help: "Axis order of rank-4 inputs: auto, nhwc or nchw (default: the training .npz's --layout recorded in the checkpoint, else auto).")
  var layout: String?
  @Option(help: "Images per forward pass (1...65536).") var batchSize: Int = 64
  @OptionGroup var threadOptions: ThreadOptions
  @Flag(help: "Print one JSON object instead of text.") var json = false

  struct Report: Codable {
    var model: String
    var predictions: [ImagePrediction]
  }

  func validate() throws {
    guard !inputs.isEmpty else { throw ValidationError("give at least one input file") }
    guard topK >= 1 else { throw ValidationError("--top-k must be at least 1, got \(topK)") }
    guard Predictor.batchSizeRange.contains(batchSize) else {
      throw ValidationError("--batch-size must be in 1...\(Predictor.batchSizeRange.upperBound), got \(batchSize)")
    }
    if let layout, InputLayout(rawValue: layout.lowercased()) == nil {
      throw ValidationError("--layout must be auto, nhwc or nchw, got '\(layout.prefix(32))'")
    }
    if let logits, !["npy", "json"].contains(URL(fileURLWithPath: logits).pathExtension.lowercased()) {
      throw ValidationError("--logits must end in .npy or .json, got '\(logits)'")
    }
  }

  func run() throws {
    // The kernels' thread count comes from the context the body runs in.
    try ComputeContext(threads: threadOptions.threads).run { try Terminal.withReadableFileErrors { try predict() } }
  }

  func predict() throws {
    let deployable = try DeployableModel(contentsOf: URL(fileURLWithPath: checkpoint))
    let predictor = try Predictor(deployable, batchSize: batchSize)
    let classCount = deployable.config.classCount
    guard topK <= classCount else {
      throw ValidationError("--top-k must be in 1...\(classCount) (the model's classes), got \(topK)")
    }
    // The layout the model's training data had, unless the flag says otherwise.
    let inputLayout = (layout ?? deployable.checkpoint.dataOptions?.layout).flatMap { InputLayout(rawValue: $0.lowercased()) } ?? .auto
    // Read and check every input before computing, so a bad file fails fast.
    let images = try inputs.map { try ImageInput.read(URL(fileURLWithPath: $0), for: deployable, layout: inputLayout) }
    var predictions: [ImagePrediction] = []
    var rows: [Float] = []
    var rowNames: [String] = []
    for input in images {
      let values = try predictor.logits(input)
      predictions += try predictor.topClasses(values, k: topK, input: input.source)
      rows += values.scalars
      rowNames += (0..<input.count).map { "\(input.source)[\($0)]" }
    }
    if let logits {
      let tensor = Tensor(shape: [rowNames.count, classCount], scalars: rows)
      try LogitsWriter.write(tensor, inputs: rowNames, model: deployable.config.name, to: URL(fileURLWithPath: logits))
    }
    if json {
      try Terminal.printJSON(Report(model: deployable.config.name, predictions: predictions))
    } else {
      for prediction in predictions {
        let classes = prediction.top.map { String(format: "%@ %.4f", $0.name, $0.probability) }
        print("\(prediction.input)[\(prediction.index)]: \(classes.joined(separator: ", "))")
      }
    }
  }
}

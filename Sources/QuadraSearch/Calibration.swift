import Foundation
import QuadraModels

/// How well predictions match measurements over a set of architectures.
public struct CalibrationMetric: Codable, Sendable, Equatable {
  /// Fraction of architectures predicted within 5% (10%) of the measurement.
  public var within5: Double
  public var within10: Double
  /// Root mean squared percentage error: √(mean((p − m)/m)²) · 100.
  public var rmspe: Double
  /// Kendall's τ-b between predictions and measurements (nil when undefined).
  public var kendallTau: Double?
  /// Fraction predicted exactly (meaningful for memory, in bytes).
  public var exact: Double

  enum CodingKeys: String, CodingKey {
    case within5 = "within_5", within10 = "within_10", rmspe, kendallTau = "kendall_tau", exact
  }

  public init(predicted: [Double], measured: [Double]) {
    let errors = zip(predicted, measured).map { ($0 - $1) / $1 }
    let n = Double(Swift.max(errors.count, 1))
    within5 = Double(errors.filter { abs($0) <= 0.05 }.count) / n
    within10 = Double(errors.filter { abs($0) <= 0.10 }.count) / n
    rmspe = (errors.reduce(0) { $0 + $1 * $1 } / n).squareRoot() * 100
    kendallTau = RankCorrelation.kendallTau(predicted, measured)
    exact = Double(zip(predicted, measured).filter { $0 == $1 }.count) / n
  }
}

/// `search calibrate`'s report.
public struct CalibrationReport: Codable, Sendable {
  public var hardware: HardwareFingerprint
  public var archs: Int
  /// Keys `train_step`, `infer_batch1`, `infer_batch`, `train_memory`, `infer_memory`.
  public var metrics: [String: CalibrationMetric]
  public var measurements: [ArchitectureMeasurement]
  public var predictions: [PredictedCosts]
  /// The latency metrics (`train_step`, `infer_batch1`, `infer_batch`) of each ``LatencySource`` alone —
  /// the linear feature model, the part table, their combination — beside those of the source the
  /// search uses in ``metrics`` (nil when the profile has no table, so that ``metrics`` are the linear model's).
  public var linearMetrics: [String: CalibrationMetric]?
  public var tableMetrics: [String: CalibrationMetric]?
  public var combinedMetrics: [String: CalibrationMetric]?
  /// Each predictor's predictions, in the order of ``measurements`` (nil without a table), so that the
  /// models can be compared architecture by architecture.
  public var linearPredictions: [PredictedCosts]?
  public var tablePredictions: [PredictedCosts]?
  public var combinedPredictions: [PredictedCosts]?
  /// The measurement's own noise (nil with one round): each round's time of each architecture against
  /// the median of its rounds, as if the single pass were a prediction of the median; keys `train_step`,
  /// `infer_batch1`, `infer_batch`. No cost model can agree with measurements better than they agree
  /// with themselves.
  public var repeatability: [String: CalibrationMetric]?
  /// The median over the passes of the factors each pass's times were multiplied by, so that the profile's
  /// own anchor architectures measured in it as stored
  /// (``Profiler/measure(_:anchoredTo:space:anchors:repetitions:minimumSeconds:rounds:reference:progress:)``; nil: the
  /// reference alone set the scale).
  public var anchoring: PartCost?

  enum CodingKeys: String, CodingKey {
    case hardware, archs, metrics, measurements, predictions, repeatability, anchoring, linearMetrics = "linear_metrics"
    case linearPredictions = "linear_predictions", tableMetrics = "table_metrics", tablePredictions = "table_predictions"
    case combinedMetrics = "combined_metrics", combinedPredictions = "combined_predictions"
  }

  /// ``repeatability`` of `measured` (``Profiler/measure(_:resolution:batchSize:threads:repetitions:minimumSeconds:rounds:reference:progress:)``'s
  /// results; relative errors, so per step and per image compare alike).
  public static func repeatability(of measured: [ConfigMeasurement]) -> [String: CalibrationMetric] {
    let keys: [(String, KeyPath<PartCost, Double>)] = [
      ("train_step", \.train), ("infer_batch1", \.inferBatch1), ("infer_batch", \.inferBatch),
    ]
    return Dictionary(
      uniqueKeysWithValues: keys.map { key, path in
        var single: [Double] = []
        var median: [Double] = []
        for measurement in measured {
          guard let middle = PartCost.median(measurement.rounds) else { continue }
          for round in measurement.rounds {
            single.append(round[keyPath: path])
            median.append(middle[keyPath: path])
          }
        }
        return (key, CalibrationMetric(predicted: single, measured: median))
      })
  }

  /// Measured and predicted series per metric key, in the order of ``metrics``' keys.
  public static func series(measurements: [ArchitectureMeasurement], predictions: [PredictedCosts], batchSize: Int) -> [(
    key: String, measured: [Double], predicted: [Double]
  )] {
    [
      ("train_step", measurements.map { $0.trainSecondsPerImage * 1000 * Double(batchSize) },
       predictions.map { $0.trainMillisecondsPerImage * Double(batchSize) }),
      ("infer_batch1", measurements.map { $0.inferSecondsBatch1 * 1000 }, predictions.map(\.inferMillisecondsBatch1)),
      ("infer_batch", measurements.map { $0.inferSecondsPerImage * 1000 * Double(batchSize) },
       predictions.map { $0.inferMillisecondsPerImage * Double(batchSize) }),
      ("train_memory", measurements.map { Double($0.trainPeakBytes) }, predictions.map { Double($0.trainMemoryBytes) }),
      ("infer_memory", measurements.map { Double($0.inferPeakBytes) }, predictions.map { Double($0.inferMemoryBytes) }),
    ]
  }

  public init(
    hardware: HardwareFingerprint, measurements: [ArchitectureMeasurement], predictions: [PredictedCosts], batchSize: Int,
    linearPredictions: [PredictedCosts]? = nil, tablePredictions: [PredictedCosts]? = nil,
    combinedPredictions: [PredictedCosts]? = nil, repeatability: [String: CalibrationMetric]? = nil,
    anchoring: PartCost? = nil
  ) {
    self.anchoring = anchoring
    self.repeatability = repeatability
    self.combinedPredictions = combinedPredictions
    self.linearPredictions = linearPredictions
    self.tablePredictions = tablePredictions
    self.hardware = hardware
    archs = measurements.count
    self.measurements = measurements
    self.predictions = predictions
    metrics = Dictionary(
      uniqueKeysWithValues: Self.series(measurements: measurements, predictions: predictions, batchSize: batchSize).map {
        ($0.key, CalibrationMetric(predicted: $0.predicted, measured: $0.measured))
      })
    func latencyMetrics(_ other: [PredictedCosts]) -> [String: CalibrationMetric] {
      Dictionary(
        uniqueKeysWithValues: Self.series(measurements: measurements, predictions: other, batchSize: batchSize).prefix(3).map {
          ($0.key, CalibrationMetric(predicted: $0.predicted, measured: $0.measured))
        })
    }
    linearMetrics = linearPredictions.map(latencyMetrics)
    tableMetrics = tablePredictions.map(latencyMetrics)
    combinedMetrics = combinedPredictions.map(latencyMetrics)
  }
}

extension CalibrationReport {
  /// One architecture's prediction error on one metric.
  public struct PredictionError: Sendable, Equatable {
    /// Index into ``CalibrationReport/measurements``.
    public var index: Int
    public var predicted: Double
    public var measured: Double
    /// (predicted − measured) / measured.
    public var relativeError: Double
  }

  /// The `count` architectures with the largest |relative error| on `key` (a key of
  /// ``series(measurements:predictions:batchSize:)``), worst first: where the cost model is off.
  public func worstPredicted(_ key: String, count: Int, batchSize: Int) -> [PredictionError] {
    guard let series = Self.series(measurements: measurements, predictions: predictions, batchSize: batchSize)
      .first(where: { $0.key == key })
    else { return [] }
    let errors = zip(series.predicted, series.measured).enumerated().map { index, pair in
      PredictionError(index: index, predicted: pair.0, measured: pair.1, relativeError: (pair.0 - pair.1) / pair.1)
    }
    return Array(errors.sorted { abs($0.relativeError) > abs($1.relativeError) }.prefix(count))
  }
}

/// Scatter plots as a self-contained SVG: one panel per series, predicted against measured, with the
/// y = x diagonal (QuadraIO's ``QuadraIO/SVGPlot`` draws lines only).
public enum ScatterPlot {
  public struct Panel {
    public var title: String
    public var x: [Double]
    public var y: [Double]
    /// Labelled points drawn as red squares (e.g. registered models).
    public var marked: [(label: String, x: Double, y: Double)]
    public var diagonal: Bool

    public init(title: String, x: [Double], y: [Double], marked: [(label: String, x: Double, y: Double)] = [], diagonal: Bool) {
      self.title = title
      self.x = x
      self.y = y
      self.marked = marked
      self.diagonal = diagonal
    }
  }

  static func escape(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
      .replacingOccurrences(of: ">", with: "&gt;")
  }

  /// Panels side by side, each 320×300 user units, axes from the data's finite range.
  public static func render(_ panels: [Panel]) -> String {
    let panelWidth = 320.0
    let panelHeight = 300.0
    var svg = String(
      format: "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"11\">\n",
      panelWidth * Double(panels.count), panelHeight)
    for (index, panel) in panels.enumerated() {
      let left = Double(index) * panelWidth + 50
      let top = 30.0
      let size = 220.0
      let xs = (panel.x + panel.marked.map(\.x)).filter(\.isFinite)
      let ys = (panel.y + panel.marked.map(\.y)).filter(\.isFinite)
      var lowX = xs.min() ?? 0, highX = xs.max() ?? 1, lowY = ys.min() ?? 0, highY = ys.max() ?? 1
      if panel.diagonal {
        lowX = Swift.min(lowX, lowY); lowY = lowX; highX = Swift.max(highX, highY); highY = highX
      }
      if highX <= lowX { highX = lowX + 1 }
      if highY <= lowY { highY = lowY + 1 }
      func px(_ x: Double) -> Double { left + (x - lowX) / (highX - lowX) * size }
      func py(_ y: Double) -> Double { top + size - (y - lowY) / (highY - lowY) * size }
      svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", left, top, size, size)
      svg += String(format: "<text x=\"%.1f\" y=\"18\">%@</text>\n", left, escape(panel.title))
      svg += String(format: "<text x=\"%.1f\" y=\"%.1f\">%.3g</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
        left, top + size + 14, lowX, left + size, top + size + 14, highX)
      svg += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n",
        left - 4, top + size, lowY, left - 4, top + 10, highY)
      if panel.diagonal {
        svg += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>\n",
          px(lowX), py(lowY), px(highX), py(highY))
      }
      for (x, y) in zip(panel.x, panel.y) where x.isFinite && y.isFinite {
        svg += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#1f77b4\" fill-opacity=\"0.7\"/>\n", px(x), py(y))
      }
      for point in panel.marked where point.x.isFinite && point.y.isFinite {
        svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"7\" height=\"7\" fill=\"#d62728\"/><text x=\"%.1f\" y=\"%.1f\">%@</text>\n",
          px(point.x) - 3.5, py(point.y) - 3.5, px(point.x) + 6, py(point.y) - 4, escape(point.label))
      }
    }
    return svg + "</svg>\n"
  }
}

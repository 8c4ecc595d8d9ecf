package io.edgeopt.core

import org.json.JSONObject
import kotlin.math.ln
import kotlin.math.max
import kotlin.math.min

/*
 * Monitoring of the deployed model, as the Python runtime's edgeopt_runtime/monitor.py does it (same bins, same
 * PSI, same thresholds; runtime/README.md "Monitoring"): shares of the latest answers, and their drift from the
 * reference the build recorded in manifest.json ("monitoring") on its held-out test split.
 */

/** Bin edges of the top-class probability; the last bin holds [0.99, 1.0]. */
val CONFIDENCE_EDGES = doubleArrayOf(0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
const val DEFAULT_MONITOR_WINDOW = 1000

/** Below this many answers in the window, drift is not computed. */
const val MIN_DRIFT_TEXTS = 100
const val PSI_MODERATE = 0.1
const val PSI_SIGNIFICANT = 0.25
private const val PSI_FLOOR = 1e-4
private const val REFERENCE_VERSION = 1
private val BINS = CONFIDENCE_EDGES.size - 1

/** Population stability index: `sum((a - e) * ln(a / e))`, shares floored at 1e-4. */
fun psi(expected: DoubleArray, actual: DoubleArray): Double {
    if (expected.size != actual.size) throw InputError("psi needs the same bins on both sides, got ${expected.size} and ${actual.size}")
    var total = 0.0
    for (i in expected.indices) {
        val e = max(expected[i], PSI_FLOOR)
        val a = max(actual[i], PSI_FLOOR)
        total += (a - e) * ln(a / e)
    }
    return total
}

/** The bin of [score]: the last edge <= score, the top bin for 1.0. */
fun confidenceBin(score: Double): Int {
    var count = 0
    while (count < CONFIDENCE_EDGES.size && CONFIDENCE_EDGES[count] <= score) count++
    return min(max(count - 1, 0), BINS - 1)
}

/** What the model answered on held-out data at build time (the manifest's `monitoring` object). */
data class MonitorReference(
    val texts: Int,
    val labelShare: Map<String, Double>,
    val confidenceShare: DoubleArray,
    val truncatedShare: Double,
    val source: String,
) {
    companion object {
        /** Parses the manifest form. @throws InputError when it is not a version-1 reference over [labels]. */
        fun fromJson(data: JSONObject, labels: List<String>): MonitorReference {
            if (data.optInt("version", -1) != REFERENCE_VERSION) throw InputError("monitoring reference must be an object with version $REFERENCE_VERSION")
            val shares = data.optJSONObject("label_share")
            if (shares == null || shares.keys().asSequence().map { it.toString() }.toSet() != labels.toSet()) throw InputError("monitoring reference label_share must name exactly the labels $labels")
            val edges = data.optJSONArray("confidence_edges")
            if (edges == null || (0 until edges.length()).map { edges.optDouble(it) } != CONFIDENCE_EDGES.toList()) {
                throw InputError("monitoring reference confidence_edges must be ${CONFIDENCE_EDGES.toList()}")
            }
            val confidence = data.optJSONArray("confidence_share")
            if (confidence == null || confidence.length() != BINS) throw InputError("monitoring reference confidence_share must hold $BINS numbers")
            return try {
                MonitorReference(
                    texts = data.getInt("texts"),
                    labelShare = labels.associateWith { shares.getDouble(it) },
                    confidenceShare = DoubleArray(BINS) { confidence.getDouble(it) },
                    truncatedShare = data.getDouble("truncated_share"),
                    source = data.optString("source", ""),
                )
            } catch (e: org.json.JSONException) {
                throw InputError("monitoring reference is malformed (${e.message})")
            }
        }

        /** The reference of a bundle, or null when it has none; a malformed one is reported by [onError]. */
        fun fromManifest(manifest: Manifest, onError: (InputError) -> Unit = {}): MonitorReference? {
            val data = manifest.raw.optJSONObject("monitoring") ?: return null
            return try {
                fromJson(data, manifest.labels)
            } catch (e: InputError) {
                onError(e)
                null
            }
        }
    }

    override fun equals(other: Any?): Boolean = other is MonitorReference && texts == other.texts && labelShare == other.labelShare &&
        confidenceShare.contentEquals(other.confidenceShare) && truncatedShare == other.truncatedShare && source == other.source

    override fun hashCode(): Int = listOf(texts, labelShare, confidenceShare.toList(), truncatedShare, source).hashCode()
}

/** How far the window is from the reference; [status] is read from the larger PSI. */
data class Drift(val labelPsi: Double, val confidencePsi: Double, val status: String) {
    companion object {
        fun between(reference: MonitorReference, labelShare: Map<String, Double>, confidenceShare: DoubleArray): Drift {
            val labelPsi = psi(labelShare.keys.map { reference.labelShare.getValue(it) }.toDoubleArray(), labelShare.values.toDoubleArray())
            val confidencePsi = psi(reference.confidenceShare, confidenceShare)
            val worst = max(labelPsi, confidencePsi)
            val status = when {
                worst > PSI_SIGNIFICANT -> "significant shift"
                worst > PSI_MODERATE -> "moderate shift"
                else -> "stable"
            }
            return Drift(labelPsi, confidencePsi, status)
        }
    }
}

/** A snapshot of [Monitor] (fields as in the Python runtime's `MonitorReport`). */
data class MonitorReport(
    val observed: Long,
    val window: Int,
    val labelShare: Map<String, Double>,
    val confidenceShare: List<Double>,
    val lowConfidenceShare: Double,
    val truncatedShare: Double,
    val cacheHitShare: Double,
    val latencyP50Ms: Double?,
    val latencyP95Ms: Double?,
    val drift: Drift?,
)

/** Counts over the latest [window] answers. Not thread-safe, like [TextClassifier]. */
class Monitor(val labels: List<String>, val reference: MonitorReference? = null, val window: Int = DEFAULT_MONITOR_WINDOW) {
    private class Entry(val label: Int, val bin: Int, val truncated: Boolean, val cached: Boolean, val latencyMs: Double)

    private val labelIndex = labels.withIndex().associate { it.value to it.index }
    private val recent = ArrayDeque<Entry>()
    private val labelCounts = IntArray(labels.size)
    private val binCounts = IntArray(BINS)
    private var truncated = 0
    private var cached = 0
    private var observed = 0L

    init {
        if (window < 1) throw InputError("monitor window $window must be a positive integer")
    }

    /** Adds one answer; the oldest leaves the window when it is full. */
    fun observe(label: String, score: Double, truncated: Boolean, cached: Boolean, latencyMs: Double) {
        val index = labelIndex[label] ?: throw InputError("label '$label' is not one of $labels")
        if (recent.size == window) count(recent.removeFirst(), -1)
        val entry = Entry(index, confidenceBin(score), truncated, cached, latencyMs)
        recent.addLast(entry)
        count(entry, 1)
        observed++
    }

    fun observe(p: Prediction) = observe(p.label, p.score, p.truncated, p.cached, p.latencyMs)

    private fun count(e: Entry, delta: Int) {
        labelCounts[e.label] += delta
        binCounts[e.bin] += delta
        if (e.truncated) truncated += delta
        if (e.cached) cached += delta
    }

    /** Shares over the window and, with a reference and at least [MIN_DRIFT_TEXTS] answers, the drift. */
    fun report(): MonitorReport {
        val n = recent.size
        fun share(count: Int): Double = if (n == 0) 0.0 else count.toDouble() / n
        val labelShare = LinkedHashMap<String, Double>().apply { labels.forEachIndexed { i, l -> put(l, share(labelCounts[i])) } }
        val confidenceShare = DoubleArray(BINS) { share(binCounts[it]) }
        val latencies = recent.map { it.latencyMs }.sorted()
        val drift = reference?.takeIf { n >= MIN_DRIFT_TEXTS }?.let { Drift.between(it, labelShare, confidenceShare) }
        val low = confidenceBin(0.6)
        return MonitorReport(
            observed = observed,
            window = n,
            labelShare = labelShare,
            confidenceShare = confidenceShare.toList(),
            lowConfidenceShare = confidenceShare.take(low).fold(0.0) { a, b -> a + b },
            truncatedShare = share(truncated),
            cacheHitShare = share(cached),
            latencyP50Ms = if (n == 0) null else if (n % 2 == 1) latencies[n / 2] else (latencies[n / 2 - 1] + latencies[n / 2]) / 2,
            // Python's round() rounds half to even, as Math.rint does.
            latencyP95Ms = if (n == 0) null else latencies[min(n - 1, max(0, Math.rint(0.95 * n).toInt() - 1))],
            drift = drift,
        )
    }

    /** Forgets every answer (the reference stays). */
    fun reset() {
        recent.clear()
        labelCounts.fill(0)
        binCounts.fill(0)
        truncated = 0
        cached = 0
        observed = 0
    }
}

package io.edgeopt.core

import kotlin.math.exp

/**
 * What a model returned for a batch: one row per text, of `numLabels` logits (a classifier) or `dim` values (the
 * unnormalized `embedding` of an embed bundle).
 */
sealed interface Logits {
    val rows: Int

    /** Float logits as the model returned them. */
    fun toFloat(): List<DoubleArray>

    /** The same values as `float32` (the Python runtime's backend output: int8 dequantized in float32). */
    fun toFloat32(): List<FloatArray>

    /** `float32` logits. */
    class Float32(val values: List<FloatArray>) : Logits {
        override val rows: Int get() = values.size
        override fun toFloat(): List<DoubleArray> = values.map { row -> DoubleArray(row.size) { row[it].toDouble() } }
        override fun toFloat32(): List<FloatArray> = values
    }

    /** `int8` / `uint8` logits (as ints) with the affine parameters to read them: `real = scale * (q - zeroPoint)`. */
    class Quantized(val values: List<IntArray>, val quantization: Quantization) : Logits {
        override val rows: Int get() = values.size

        // Rounded to float32 like the Python runtime's dequantize, so both sides compute softmax of the same numbers.
        override fun toFloat(): List<DoubleArray> = toFloat32().map { row -> DoubleArray(row.size) { row[it].toDouble() } }

        // numpy: float32(scale) * float32(q - zero_point), one float32 rounding, so the values are Python's exactly.
        override fun toFloat32(): List<FloatArray> {
            val scale = quantization.scale.toFloat()
            return values.map { row -> FloatArray(row.size) { scale * (row[it] - quantization.zeroPoint).toFloat() } }
        }
    }
}

/**
 * A model backend: ONNX Runtime Android or LiteRT in the app, anything that maps token ids to logits in tests. An
 * embed bundle's model is one too: its rows are the `embedding` output ([TextEmbedder] normalizes them).
 * Implementations cast the ids to the dtype their model declares (int32 or int64).
 */
interface TextModel : AutoCloseable {
    /** `"onnx"` or `"tflite"`: part of every cache key, as in the Python runtime. */
    val backend: String

    /** Logits for a batch; [inputIds] and [attentionMask] are `[batch][maxSeqLen]`. */
    fun run(inputIds: List<LongArray>, attentionMask: List<LongArray>): Logits

    override fun close() {}
}

/** Label and softmax scores of one text. */
data class Classification(val label: String, val score: Double, val scores: Map<String, Double>)

/** Row-wise softmax in double precision (the Python runtime's `softmax`). */
fun softmax(logits: DoubleArray): DoubleArray {
    val max = logits.maxOrNull() ?: return DoubleArray(0)
    val e = DoubleArray(logits.size) { exp(logits[it] - max) }
    val sum = e.sum()
    return DoubleArray(e.size) { e[it] / sum }
}

/**
 * Turns logits into labels and scores; the first maximum wins a tie, like `numpy.argmax`.
 *
 * @throws ModelError the logits are not `[batch, labels.size]`.
 */
fun classify(logits: Logits, labels: List<String>, batch: Int = logits.rows): List<Classification> {
    val rows = logits.toFloat()
    if (rows.size != batch || rows.any { it.size != labels.size }) {
        val shape = "(${rows.size}, ${rows.firstOrNull()?.size ?: 0})"
        throw ModelError("the model returned logits of shape $shape, expected ($batch, ${labels.size}) for labels $labels; rebuild the bundle")
    }
    return rows.map { row ->
        val p = softmax(row)
        var best = 0
        for (i in p.indices) if (p[i] > p[best]) best = i
        Classification(labels[best], p[best], labels.indices.associate { labels[it] to p[it] })
    }
}

package io.edgeopt.demo

import io.edgeopt.core.Logits
import io.edgeopt.core.ModelError
import io.edgeopt.core.Quantization
import io.edgeopt.core.TextModel
import org.tensorflow.lite.DataType
import org.tensorflow.lite.Interpreter
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * LiteRT backend, matching the runtime's `TfliteBackend`: inputs by name (exact, else substring), int32/int64 as
 * the model declares, output whose name contains `logits` (else the first), int8 output dequantized with the
 * tensor's own scale and zero point. One call per text (batch 1), which every converted model accepts.
 */
class LiteRtTextModel(modelBytes: ByteArray, threads: Int?) : TextModel {
    override val backend = "tflite"
    private val interpreter = Interpreter(
        ByteBuffer.allocateDirect(modelBytes.size).order(ByteOrder.nativeOrder()).put(modelBytes).also { it.rewind() },
        Interpreter.Options().apply { threads?.let { setNumThreads(it) } },
    )
    private val inputNames = (0 until interpreter.inputTensorCount).map { interpreter.getInputTensor(it).name() }
    private val idsIndex = inputIndex("input_ids")
    private val maskIndex = inputIndex("attention_mask")
    private val outputIndex = (0 until interpreter.outputTensorCount)
        .firstOrNull { "logits" in interpreter.getOutputTensor(it).name() } ?: 0

    private fun inputIndex(wanted: String): Int =
        inputNames.indexOfFirst { it == wanted }.takeIf { it >= 0 }
            ?: inputNames.indexOfFirst { wanted in it }.takeIf { it >= 0 }
            ?: throw ModelError("the LiteRT model has no input named like '$wanted' (it has $inputNames); rebuild the bundle")

    @Synchronized // an Interpreter is not thread-safe
    override fun run(inputIds: List<LongArray>, attentionMask: List<LongArray>): Logits {
        val rows = inputIds.indices.map { i -> runRows(listOf(inputIds[i]), listOf(attentionMask[i])) }
        return if (rows.first() is Logits.Quantized) {
            Logits.Quantized(rows.flatMap { (it as Logits.Quantized).values }, (rows.first() as Logits.Quantized).quantization)
        } else {
            Logits.Float32(rows.flatMap { (it as Logits.Float32).values })
        }
    }

    private fun buffer(index: Int, rows: List<LongArray>): ByteBuffer {
        val int64 = interpreter.getInputTensor(index).dataType() == DataType.INT64
        val size = rows.sumOf { it.size } * (if (int64) 8 else 4)
        val buf = ByteBuffer.allocateDirect(size).order(ByteOrder.nativeOrder())
        rows.forEach { row -> row.forEach { if (int64) buf.putLong(it) else buf.putInt(it.toInt()) } }
        return buf.also { it.rewind() }
    }

    private fun runRows(ids: List<LongArray>, mask: List<LongArray>): Logits {
        val shape = intArrayOf(ids.size, ids.first().size)
        interpreter.resizeInput(idsIndex, shape)
        interpreter.resizeInput(maskIndex, shape)
        interpreter.allocateTensors()
        val inputs = arrayOfNulls<Any>(interpreter.inputTensorCount)
        inputs[idsIndex] = buffer(idsIndex, ids)
        inputs[maskIndex] = buffer(maskIndex, mask)
        val out = interpreter.getOutputTensor(outputIndex)
        val labels = out.shape().last()
        val result = ByteBuffer.allocateDirect(out.numBytes()).order(ByteOrder.nativeOrder())
        interpreter.runForMultipleInputsOutputs(inputs, mapOf(outputIndex to result))
        result.rewind()
        return when (out.dataType()) {
            DataType.FLOAT32 -> Logits.Float32(List(ids.size) { FloatArray(labels) { result.float } })
            DataType.INT8, DataType.UINT8 -> {
                val q = out.quantizationParams()
                val unsigned = out.dataType() == DataType.UINT8
                Logits.Quantized(
                    List(ids.size) { IntArray(labels) { result.get().toInt().let { b -> if (unsigned) b and 0xFF else b } } },
                    Quantization(q.scale.toDouble(), q.zeroPoint),
                )
            }
            else -> throw ModelError("unsupported LiteRT logits type ${out.dataType()}; rebuild the bundle")
        }
    }

    override fun close() = interpreter.close()
}

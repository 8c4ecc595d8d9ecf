package io.edgeopt.demo

import ai.onnxruntime.OnnxJavaType
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import ai.onnxruntime.TensorInfo
import io.edgeopt.core.Logits
import io.edgeopt.core.ModelError
import io.edgeopt.core.Quantization
import io.edgeopt.core.TextModel
import java.nio.IntBuffer
import java.nio.LongBuffer

/**
 * ONNX Runtime Android backend, matching the runtime's `OnnxBackend`: inputs by name (exact, else substring),
 * ids cast to the declared int32/int64, output `logits` (else the first), int8 output read with the manifest's
 * quantization, one call per text when the model fixes the batch to 1.
 */
class OnnxTextModel(modelBytes: ByteArray, threads: Int?, private val quantization: Quantization?) : TextModel {
    override val backend = "onnx"
    private val env = OrtEnvironment.getEnvironment()
    private val session = env.createSession(
        modelBytes,
        OrtSession.SessionOptions().apply {
            threads?.let { setIntraOpNumThreads(it) }
            setInterOpNumThreads(1)
        },
    )
    private val idsName = inputName("input_ids")
    private val maskName = inputName("attention_mask")
    private val outputName = session.outputNames.firstOrNull { it == "logits" } ?: session.outputNames.first()
    private val int32 = (session.inputInfo.getValue(idsName).info as TensorInfo).type == OnnxJavaType.INT32
    private val batchOne = (session.inputInfo.getValue(idsName).info as TensorInfo).shape[0] == 1L

    private fun inputName(wanted: String): String = session.inputNames.firstOrNull { it == wanted }
        ?: session.inputNames.firstOrNull { wanted in it }
        ?: throw ModelError("the ONNX model has no input named like '$wanted' (it has ${session.inputNames}); rebuild the bundle")

    override fun run(inputIds: List<LongArray>, attentionMask: List<LongArray>): Logits {
        val step = if (batchOne) 1 else inputIds.size
        val parts = (inputIds.indices step step).map { start ->
            val end = minOf(start + step, inputIds.size)
            runChunk(inputIds.subList(start, end), attentionMask.subList(start, end))
        }
        return if (parts.first() is Logits.Quantized) {
            Logits.Quantized(parts.flatMap { (it as Logits.Quantized).values }, (parts.first() as Logits.Quantized).quantization)
        } else {
            Logits.Float32(parts.flatMap { (it as Logits.Float32).values })
        }
    }

    private fun tensor(rows: List<LongArray>): OnnxTensor {
        val shape = longArrayOf(rows.size.toLong(), rows.first().size.toLong())
        val flat = rows.flatMap { it.asList() }
        return if (int32) {
            OnnxTensor.createTensor(env, IntBuffer.wrap(flat.map { it.toInt() }.toIntArray()), shape)
        } else {
            OnnxTensor.createTensor(env, LongBuffer.wrap(flat.toLongArray()), shape)
        }
    }

    private fun runChunk(ids: List<LongArray>, mask: List<LongArray>): Logits =
        tensor(ids).use { idsTensor ->
            tensor(mask).use { maskTensor ->
                session.run(mapOf(idsName to idsTensor, maskName to maskTensor)).use { result ->
                    when (val value = result.get(outputName).get().value) {
                        is Array<*> -> when (value.firstOrNull()) {
                            is FloatArray -> Logits.Float32(value.map { it as FloatArray })
                            is ByteArray -> Logits.Quantized(
                                value.map { row -> (row as ByteArray).map { it.toInt() }.toIntArray() },
                                quantization ?: throw ModelError("the ONNX model returns int8 logits but the manifest has no output_quantization; rebuild the bundle"),
                            )
                            else -> throw ModelError("unsupported ONNX logits type ${value.firstOrNull()?.javaClass}")
                        }
                        else -> throw ModelError("unsupported ONNX logits value ${value?.javaClass}")
                    }
                }
            }
        }

    override fun close() = session.close()
}

/* krongrad.h — the umbrella header: include this one to use krongrad.
 * Link with `pkg-config --cflags --libs krongrad`.
 */
#ifndef KRONGRAD_H
#define KRONGRAD_H

#define KRONGRAD_VERSION "0.1.0"

#include "tensor/kg_tensor.h"
#include "nn/kg_nn.h"
#include "nn/kg_adapter.h"
#include "models/kg_formats.h"
#include "models/kg_tokenizer.h"
#include "models/kg_models.h"
#include "models/kg_peft.h"
#include "models/kg_chat.h"
#include "models/kg_export.h"
#include "train/kg_tasks.h"
#include "train/kg_train.h"
#include "train/kg_sft.h"

#endif

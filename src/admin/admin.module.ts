import { Module } from '@nestjs/common';
import { AdminController } from './admin.controller';
import { UserViewService } from './user-view.service';

/** Admin routes (ADMIN_API_KEYS): the per-user view, GET /v1/users/<id>. */
@Module({ controllers: [AdminController], providers: [UserViewService] })
export class AdminModule {}
